"""Featurizers: hashed rows never change, versions follow params, and MiniLM embeds offline into unit vectors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import scipy.sparse as sp

from models_app.ml.featurizers import (
    FEATURIZERS,
    UNKNOWN_FEATURIZER,
    Featurizer,
    HashingFeaturizer,
    MiniLMFeaturizer,
    clean_text,
    featurizer_from_spec,
)

TEXTS = ["Check out my channel!!", "great song, love it", "fish &amp; chips<br>yum", "\ufeffhello world"]
SMALL = HashingFeaturizer(n_features=2**12)


def dense(matrix: sp.csr_matrix) -> np.ndarray:
    """Return a small sparse matrix as an array for exact comparisons."""
    return matrix.toarray()


def test_hashing_rows_are_float32_raw_counts():
    matrix = SMALL.transform(TEXTS)

    assert isinstance(matrix, sp.csr_matrix)
    assert matrix.dtype == np.float32
    assert matrix.shape == (4, 2 * 2**12) == (4, SMALL.dim)
    assert np.all(matrix.data > 0)
    assert np.array_equal(matrix.data, np.round(matrix.data))

    words_only = HashingFeaturizer(n_features=2**12, char_ngrams=None)
    counts = words_only.transform(["spam spam eggs"])
    assert words_only.dim == 2**12
    assert counts.sum() == 5  # three unigrams and two bigrams, none normalised away


def test_hashing_is_deterministic_and_stateless():
    together = SMALL.transform(TEXTS)
    alone = sp.vstack([HashingFeaturizer(n_features=2**12).transform([text]) for text in TEXTS])
    shuffled = SMALL.transform(TEXTS[::-1])

    assert np.array_equal(dense(together), dense(alone))
    assert np.array_equal(dense(together), dense(shuffled)[::-1])
    assert np.array_equal(dense(SMALL.transform(TEXTS)), dense(together))


def test_html_entities_and_byte_order_marks_are_cleaned_before_hashing():
    assert np.array_equal(dense(SMALL.transform(["fish &amp; chips"])), dense(SMALL.transform(["fish & chips"])))
    assert np.array_equal(dense(SMALL.transform(["\ufeffhello\ufeff"])), dense(SMALL.transform(["hello"])))
    assert not np.array_equal(dense(SMALL.transform(["a<br>b"])), dense(SMALL.transform(["a b"])))
    assert clean_text("Tom &amp; Jerry &lt;3\ufeff") == "Tom & Jerry <3"


def test_hashing_reports_progress_and_handles_no_texts():
    calls: list[tuple[int, int]] = []

    SMALL.transform(TEXTS, progress=lambda done, total: calls.append((done, total)))

    assert calls == [(4, 4)]
    assert SMALL.transform([]).shape == (0, SMALL.dim)


def test_version_changes_with_every_param():
    base = HashingFeaturizer()
    variants = [
        HashingFeaturizer(n_features=2**17),
        HashingFeaturizer(word_ngrams=(1, 1)),
        HashingFeaturizer(char_ngrams=(2, 5)),
        HashingFeaturizer(char_ngrams=None),
        HashingFeaturizer(lowercase=False),
    ]

    versions = {base.version, *(variant.version for variant in variants)}

    assert len(versions) == 1 + len(variants)
    assert base.version == HashingFeaturizer().version
    assert re.fullmatch(r"hashing-[0-9a-f]{16}", base.version)
    minilm = MiniLMFeaturizer()
    assert re.fullmatch(r"minilm-[0-9a-f]{16}", minilm.version)
    assert len({minilm.version, MiniLMFeaturizer(max_length=256).version, MiniLMFeaturizer(batch_size=8).version}) == 3
    assert MiniLMFeaturizer(threads=1).version == minilm.version  # threads change speed, not vectors


@pytest.mark.parametrize("featurizer", [HashingFeaturizer(), HashingFeaturizer(char_ngrams=None), MiniLMFeaturizer()])
def test_spec_round_trips_through_json(featurizer: Featurizer):
    spec = json.loads(json.dumps({"name": featurizer.name, "params": featurizer.params()}))

    rebuilt = featurizer_from_spec(spec["name"], spec["params"])

    assert rebuilt == featurizer
    assert rebuilt.version == featurizer.version
    assert isinstance(rebuilt, Featurizer)
    assert rebuilt.name in FEATURIZERS


def test_bad_specs_are_refused():
    with pytest.raises(ValueError) as error:
        featurizer_from_spec("bag-of-words", {})
    assert str(error.value) == UNKNOWN_FEATURIZER.format(name="bag-of-words")
    with pytest.raises(ValueError, match="Unknown params"):
        featurizer_from_spec("hashing", {"n_features": 16, "stop_words": "english"})
    with pytest.raises(ValueError, match="n_features"):
        HashingFeaturizer(n_features=0)
    with pytest.raises(ValueError, match="word_ngrams"):
        HashingFeaturizer(word_ngrams=(2, 1))
    with pytest.raises(ValueError, match="batch_size"):
        MiniLMFeaturizer(batch_size=0)


def test_minilm_threads_come_from_the_worker_not_the_spec():
    featurizer = featurizer_from_spec("minilm", {"batch_size": 16, "max_length": 64}, threads=1)

    assert featurizer == MiniLMFeaturizer(batch_size=16, max_length=64, threads=1)
    assert featurizer.params() == {"batch_size": 16, "max_length": 64}


@pytest.mark.slow
def test_minilm_embeds_into_unit_vectors_that_keep_meaning():
    featurizer = MiniLMFeaturizer(batch_size=2, threads=1)
    calls: list[tuple[int, int]] = []
    texts = ["The cat sits on the mat.", "A kitten is sitting on a rug.", "Quarterly tax filing deadlines are near."]

    vectors = featurizer.transform(texts, progress=lambda done, total: calls.append((done, total)))

    assert vectors.shape == (3, 384) == (3, featurizer.dim)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert similarity[0, 1] > similarity[1, 2] + 0.2
    assert calls == [(2, 3), (3, 3)]
    assert np.allclose(featurizer.transform(texts[:1]), vectors[:1], atol=1e-5)
    assert featurizer.transform([]).shape == (0, 384)
