"""Score texts with a stored model version: its artifact and featurizer, loaded once per process and reused.

Model versions never change after training, so a loaded model is cached by (version id, artifact checksum) for as
long as the process lives; serving, the gate and the rules preview all go through here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from labeling.models import Example, Label
from models_app.ml.featurizers import Featurizer
from models_app.ml.training import SplitRecord, load_artifact, load_split, predict_proba
from models_app.models import FeatureSet, ModelVersion

from .feature_shards import FeatureStoreError
from .features import features_load, featurizer_build

CACHE_SIZE = 4
ERROR_NO_SPLIT = "Model v{number} was trained before Flywheel recorded each model's training examples."


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model version ready to score: the classifier, its featurizer and the label order of its columns."""

    version_id: int
    number: int
    model: Any
    featurizer: Featurizer
    labels: tuple[str, ...]

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        """Featurize the texts as the model was trained and return one probability column per label."""
        return predict_proba(self.model, self.featurizer.transform(list(texts)), self.labels)


@dataclass(frozen=True)
class Holdout:
    """A model's time-split holdout as recorded at training: example ids, texts, meta and true labels."""

    example_ids: np.ndarray
    texts: list[str]
    metas: list[dict[str, Any]]
    y_true: list[str]
    # Holdout examples left out because they were in `exclude`.
    excluded: int = 0


_cache: OrderedDict[tuple[int, str], LoadedModel] = OrderedDict()
_lock = threading.Lock()


def model_labels(version: ModelVersion) -> tuple[str, ...]:
    """Return the label order a version's probabilities use: the project's labels, then any only the model knows."""
    names = list(
        Label.objects.filter(project_id=version.project_id).order_by("order", "name").values_list("name", flat=True)
    )
    classes = [str(name) for name in (version.params.get("fit") or {}).get("classes", [])]
    return tuple(names + sorted(set(classes) - set(names)))


def model_cached(version_id: int, sha256: str) -> LoadedModel | None:
    """Return the version's model if this process has loaded it already, else None."""
    with _lock:
        loaded = _cache.get((version_id, sha256))
        if loaded is not None:
            _cache.move_to_end((version_id, sha256))
        return loaded


def model_load(version: ModelVersion) -> LoadedModel:
    """Return the version's model from the process cache, loading (and checksum-checking) it the first time."""
    key = (version.pk, version.artifact_sha256)
    with _lock:
        loaded = _cache.get(key)
        if loaded is not None:
            _cache.move_to_end(key)
            return loaded
    model = load_artifact(Path(settings.ARTIFACT_DIR) / version.artifact_path, version.artifact_sha256)
    featurizer = featurizer_build(name=version.featurizer, params=(version.params or {}).get("featurizer_params"))
    labels = model_labels(version)
    missing = sorted({str(name) for name in model.classes_} - set(labels))
    loaded = LoadedModel(version.pk, version.number, model, featurizer, labels + tuple(missing))
    with _lock:
        _cache[key] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def model_cache_clear() -> None:
    """Forget every loaded model (tests; a process that must free memory)."""
    with _lock:
        _cache.clear()


def split_load(version: ModelVersion) -> SplitRecord | None:
    """Return the version's recorded split, or None for a version trained before splits were recorded."""
    if not version.split_path:
        return None
    return load_split(Path(settings.ARTIFACT_DIR) / version.split_path, version.split_sha256)


def holdout_load(version: ModelVersion, *, exclude: np.ndarray | None = None) -> Holdout | None:
    """Return the version's holdout (minus the `exclude` example ids) with texts and meta; None without a split."""
    record = split_load(version)
    if record is None:
        return None
    ids = np.asarray(record.holdout_ids, dtype=np.int64)
    labels = [str(label) for label in record.holdout_labels]
    excluded = 0
    if exclude is not None and exclude.size:
        keep = ~np.isin(ids, exclude)
        excluded = int(ids.size - keep.sum())
        ids = ids[keep]
        labels = [label for label, kept in zip(labels, keep.tolist(), strict=True) if kept]
    found = {row[0]: row[1:] for row in Example.objects.filter(pk__in=ids.tolist()).values_list("id", "text", "meta")}
    present = [index for index, example_id in enumerate(ids.tolist()) if example_id in found]
    ids = ids[present]
    return Holdout(
        example_ids=ids,
        texts=[found[example_id][0] for example_id in ids.tolist()],
        metas=[found[example_id][1] or {} for example_id in ids.tolist()],
        y_true=[labels[index] for index in present],
        excluded=excluded,
    )


def version_proba(
    version: ModelVersion, example_ids: np.ndarray, texts: Sequence[str], labels: Sequence[str]
) -> np.ndarray:
    """Score stored examples: vectors from the feature store when it has them all, else featurized now."""
    loaded = model_load(version)
    feature_set = FeatureSet.objects.filter(project_id=version.project_id, version=version.feature_version).first()
    matrix = None
    if feature_set is not None and len(example_ids):
        try:
            matrix = features_load(feature_set=feature_set, example_ids=example_ids).rows_for(example_ids)
        except FeatureStoreError:
            matrix = None
    if matrix is None:
        matrix = loaded.featurizer.transform(list(texts))
    return predict_proba(loaded.model, matrix, list(labels))
