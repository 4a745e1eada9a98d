"""Nearest neighbours by cosine similarity over stored feature rows (dense or sparse), in chunks."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models_app.ml.candidates import similarity_matrix, unit_rows


def top_k(
    queries: np.ndarray | sp.spmatrix, base: np.ndarray | sp.spmatrix, k: int, *, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Return, per query row, the positions of its k most similar base rows (most similar first) and their cosines.

    Fewer than k base rows give fewer columns; no base rows give empty (n, 0) arrays.
    """
    n, size = queries.shape[0], base.shape[0]
    k = max(0, min(k, size))
    positions = np.zeros((n, k), dtype=np.int64)
    similarity = np.zeros((n, k), dtype=np.float32)
    if k == 0 or n == 0:
        return positions, similarity
    unit_base = unit_rows(base)
    for start in range(0, n, chunk):
        sim = similarity_matrix(unit_rows(queries[start : start + chunk]), unit_base)
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < size else np.tile(np.arange(size), (len(sim), 1))
        rows = np.arange(len(sim))[:, None]
        order = np.argsort(-sim[rows, part], axis=1, kind="stable")
        chosen = part[rows, order]
        positions[start : start + len(sim)] = chosen
        similarity[start : start + len(sim)] = sim[rows, chosen]
    return positions, similarity
