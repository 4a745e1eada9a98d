"""The feature store: each example's vectors are computed once per featurizer version and loaded fast.

Which examples still need vectors is the project's example ids minus the union of the shards' ids files, not a
watermark: an import that commits a lower id after a higher one is still featurized. The files themselves are
`feature_shards`' business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from labeling.models import Example, Project
from models_app.ml.featurizers import FEATURIZERS, Featurizer, featurizer_from_spec
from models_app.models import FeatureSet, FeatureShard

from .feature_shards import (
    FeatureStoreError,
    LoadPart,
    Matrix,
    ShardWriter,
    dense_concatenate,
    shard_matrix_check,
    shard_open,
    sparse_concatenate,
    stored_ids,
)

ProgressCallback = Callable[[int, int], None]

DEFAULT_CHUNK_SIZE = 2000

ERROR_UNKNOWN_FEATURIZER = "Unknown featurizer {name!r}: choose one of {choices}."
ERROR_BAD_PARAMS = "The {name} featurizer does not accept these params: {error}"
ERROR_VERSION_MISMATCH = (
    "The featurizer's version {actual} is not feature set {version}'s; vectors of two versions are never mixed."
)
ERROR_CHUNK_SIZE = "chunk_size must be a positive whole number, got {value!r}."
ERROR_MISSING_VECTORS = (
    "{count:,} of the requested examples have no vectors in feature set {version} (first: {ids}); "
    "featurize the project's new examples first."
)
ERROR_DUPLICATE_VECTORS = "Feature set {version} stores example {example_id} in more than one shard."


@dataclass(frozen=True, eq=False)
class FeatureMatrix:
    """Vectors of one feature set: row i of `matrix` belongs to example `ids[i]`; `ids` is increasing."""

    feature_set_id: int
    version: str
    ids: np.ndarray
    matrix: Matrix

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def positions(self, example_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Return the row of each given example, in the given order; FeatureStoreError names the ones missing."""
        wanted = np.asarray(example_ids, dtype=np.int64).reshape(-1)
        if wanted.size == 0:
            return np.zeros(0, dtype=np.int64)
        positions = np.searchsorted(self.ids, wanted)
        inside = positions < self.ids.shape[0]
        found = np.zeros(wanted.shape[0], dtype=bool)
        found[inside] = self.ids[positions[inside]] == wanted[inside]
        if not found.all():
            missing = wanted[~found]
            raise FeatureStoreError(
                ERROR_MISSING_VECTORS.format(
                    count=int(missing.size), version=self.version, ids=", ".join(str(i) for i in missing[:5])
                )
            )
        return positions

    def rows_for(self, example_ids: Sequence[int] | np.ndarray) -> Matrix:
        """Return the vectors of the given examples as rows in the given order (repeats allowed)."""
        return self.matrix[self.positions(example_ids)]


def featurizer_build(*, name: str, params: dict[str, Any] | None = None) -> Featurizer:
    """Build a featurizer from a name and params (missing params take its defaults); FeatureStoreError if unusable."""
    if name not in FEATURIZERS:
        raise FeatureStoreError(ERROR_UNKNOWN_FEATURIZER.format(name=name, choices=", ".join(FEATURIZERS)))
    try:
        return featurizer_from_spec(name, dict(params or {}))
    except (TypeError, ValueError) as exc:
        raise FeatureStoreError(ERROR_BAD_PARAMS.format(name=name, error=exc)) from exc


def feature_set_get_or_create(*, project: Project, featurizer: Featurizer) -> FeatureSet:
    """Return the project's feature set for this featurizer's version, creating it empty the first time.

    The version changes with every param, so new params get a new set and old vectors are never mixed in.
    """
    feature_set, _ = FeatureSet.objects.get_or_create(
        project=project,
        version=featurizer.version,
        defaults={
            "featurizer": featurizer.name,
            "params": featurizer.params(),
            "dim": featurizer.dim,
            "sparse": featurizer.sparse,
        },
    )
    return feature_set


def feature_set_featurizer(*, feature_set: FeatureSet) -> Featurizer:
    """Rebuild the featurizer that made this set's vectors (its stored name and params)."""
    featurizer = featurizer_build(name=feature_set.featurizer, params=feature_set.params)
    _check_version(feature_set, featurizer)
    return featurizer


def feature_set_missing_ids(*, feature_set: FeatureSet) -> np.ndarray:
    """Return the increasing ids of the project's examples that have no vectors in this set yet."""
    stored, _ = stored_ids(feature_set)
    return np.setdiff1d(_project_example_ids(feature_set.project_id), stored, assume_unique=True)


def features_compute(
    *,
    feature_set: FeatureSet,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_progress: ProgressCallback | None = None,
    featurizer: Featurizer | None = None,
) -> int:
    """Featurize the project's examples that have no vectors in this set, a shard per chunk; return how many.

    `on_progress(done, total)` is called as texts are featurized. Safe to run twice at once on one set: shards are
    numbered under a lock on the set, and rows another writer stored meanwhile are dropped before a shard is kept.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise FeatureStoreError(ERROR_CHUNK_SIZE.format(value=chunk_size))
    if featurizer is None:
        featurizer = feature_set_featurizer(feature_set=feature_set)
    else:
        _check_version(feature_set, featurizer)
    writer = ShardWriter(feature_set)
    stored, writer.known_max = stored_ids(feature_set)
    missing = np.setdiff1d(_project_example_ids(feature_set.project_id), stored, assume_unique=True)
    total = int(missing.size)
    if on_progress is not None:
        on_progress(0, total)
    written = 0
    for start in range(0, total, chunk_size):
        chunk = missing[start : start + chunk_size]
        texts = dict(Example.objects.filter(pk__in=chunk.tolist()).values_list("id", "text"))
        # An example deleted since the ids were read is skipped.
        ids = np.fromiter((i for i in chunk.tolist() if i in texts), dtype=np.int64)
        if ids.size:
            progress = None if on_progress is None else _offset_progress(on_progress, offset=start, total=total)
            matrix = featurizer.transform([texts[i] for i in ids.tolist()], progress=progress)
            written += writer.store(ids, matrix)
        if on_progress is not None:
            on_progress(min(start + chunk_size, total), total)
    feature_set.refresh_from_db(fields=["rows", "updated_at"])
    return written


def features_load(
    *,
    feature_set: FeatureSet,
    example_ids: Sequence[int] | np.ndarray | None = None,
    verify: bool = False,
) -> FeatureMatrix:
    """Load the set's vectors (only those of `example_ids`, when given, that have one) into one matrix.

    Every shard's file sizes, matrix shape and ids are checked against its row; `verify=True` also compares each
    shard's SHA-256, which reads every byte once more. It is off by default because loading is on the path of every
    training and scoring run, and the size, shape and ids checks already catch truncated or swapped files;
    `features_verify` checks every checksum on demand. Ask `rows_for` for the rows: it raises for examples without vectors.
    """
    shards = list(FeatureShard.objects.filter(feature_set_id=feature_set.pk).order_by("number"))
    wanted = None if example_ids is None else np.unique(np.asarray(example_ids, dtype=np.int64).reshape(-1))
    parts: list[LoadPart] = []
    for shard in shards:
        if wanted is not None:
            low = np.searchsorted(wanted, shard.first_example_id, side="left")
            high = np.searchsorted(wanted, shard.last_example_id, side="right")
            if high == low:
                continue
        matrix_path, ids = shard_open(feature_set, shard, verify=verify)
        rows = None if wanted is None else np.flatnonzero(np.isin(ids, wanted, assume_unique=True))
        if rows is not None:
            if rows.size == 0:
                continue
            ids = ids[rows]
        parts.append((shard, matrix_path, ids, rows))
    all_ids = np.concatenate([part[2] for part in parts]) if parts else np.zeros(0, dtype=np.int64)
    if feature_set.sparse:
        matrix: Matrix = sparse_concatenate(feature_set, parts, total=int(all_ids.size))
    else:
        matrix = dense_concatenate(feature_set, parts, total=int(all_ids.size))
    if all_ids.size > 1 and not bool(np.all(all_ids[1:] > all_ids[:-1])):
        # Shards are increasing inside; across shards an import that committed late brings lower ids.
        order = np.argsort(all_ids, kind="stable")
        all_ids = all_ids[order]
        repeated = np.flatnonzero(all_ids[1:] == all_ids[:-1])
        if repeated.size:
            raise FeatureStoreError(
                ERROR_DUPLICATE_VECTORS.format(version=feature_set.version, example_id=int(all_ids[repeated[0]]))
            )
        matrix = matrix[order]
    return FeatureMatrix(feature_set_id=feature_set.pk, version=feature_set.version, ids=all_ids, matrix=matrix)


def features_verify(*, feature_set: FeatureSet) -> int:
    """Check every shard of the set, checksums included; return how many rows were checked."""
    checked = 0
    for shard in FeatureShard.objects.filter(feature_set_id=feature_set.pk).order_by("number"):
        matrix_path, ids = shard_open(feature_set, shard, verify=True)
        shard_matrix_check(feature_set, shard, matrix_path)
        checked += int(ids.size)
    return checked


def _offset_progress(on_progress: ProgressCallback, *, offset: int, total: int) -> ProgressCallback:
    """Turn a chunk's own progress into progress over the whole run."""

    def report(done: int, _chunk_total: int) -> None:
        on_progress(min(offset + done, total), total)

    return report


def _check_version(feature_set: FeatureSet, featurizer: Featurizer) -> None:
    if featurizer.version != feature_set.version:
        raise FeatureStoreError(ERROR_VERSION_MISMATCH.format(actual=featurizer.version, version=feature_set.version))


def _project_example_ids(project_id: int) -> np.ndarray:
    ids = Example.objects.filter(project_id=project_id).order_by("id").values_list("id", flat=True)
    return np.fromiter(ids.iterator(chunk_size=20_000), dtype=np.int64)
