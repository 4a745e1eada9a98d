"""Nearest neighbours: the same answer as brute force, dense or sparse, chunked or not."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models_app.ml.neighbours import top_k


def _brute(queries, base, k):
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    sim = q @ b.T
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sim, order, axis=1)


def test_top_k_matches_brute_force_dense_and_sparse_in_chunks():
    rng = np.random.default_rng(0)
    queries, base = rng.standard_normal((23, 6)), rng.standard_normal((40, 6))
    expected, expected_sim = _brute(queries, base, 5)
    for q, b in ((queries, base), (sp.csr_matrix(queries), sp.csr_matrix(base))):
        for chunk in (4, 4096):
            positions, similarity = top_k(q, b, 5, chunk=chunk)
            assert (positions == expected).all()
            assert np.allclose(similarity, expected_sim, atol=1e-5)


def test_top_k_with_fewer_base_rows_than_k_returns_all_of_them_in_order():
    queries = np.array([[1.0, 0.0]])
    base = np.array([[0.0, 1.0], [1.0, 0.1]])
    positions, similarity = top_k(queries, base, 5)
    assert positions.tolist() == [[1, 0]] and similarity[0, 0] > similarity[0, 1]
    empty, _ = top_k(queries, np.zeros((0, 2)), 3)
    assert empty.shape == (1, 0)
