"""What the cascade's sources read from the database and the feature store: the pool, the labels, the LLM's
opinions, feedback examples, strata, out-of-fold probabilities and vectors by id."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
from django.db import connection

from labeling.models import (
    HUMAN_KINDS,
    LIVE_STATUSES,
    Annotation,
    AnnotationKind,
    Example,
    ExampleOrigin,
    Project,
    QueueItem,
    QueueReason,
)
from models_app.ml.training import TrainingConfig, predict_proba, train_model

from .features import FeatureMatrix

# Out-of-fold predictions for hard negatives and label errors use at most this many of the newest labels.
CV_MAX_LABELS = 20_000
CV_FOLDS = 3
# Automatic strata: a metadata field present on most sampled rows, with this many distinct values at most.
STRATA_SAMPLE = 2_000
STRATA_MAX_VALUES = 30
STRATA_MIN_PRESENT = 0.8
SEED = 0


def pool_ids(project: Project) -> np.ndarray:
    """Return the ids of examples with a ready regular slot (the pool the sources choose from), increasing."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT DISTINCT example_id FROM {QueueItem._meta.db_table}
                 WHERE project_id = %s AND state = 'ready' AND reason_code NOT IN (%s, %s)
                 ORDER BY example_id""",
            [project.pk, QueueReason.GOLD, QueueReason.LABEL_ERROR],
        )
        return np.fromiter((row[0] for row in cursor), dtype=np.int64)


@dataclass
class LabeledSet:
    """The project's standing labels (newest CV_MAX_LABELS), as ids and label columns, plus who checked them."""

    ids: np.ndarray
    given: np.ndarray
    reviewable: np.ndarray  # False where a second person already labeled it, or it has a final answer


def labeled_rows(project: Project, label_index: dict[str, int]) -> LabeledSet:
    rows = (
        Annotation.objects.filter(example__project=project, kind__in=HUMAN_KINDS, status__in=LIVE_STATUSES)
        .values_list("example_id", "label__name", "kind", "example__observed_at", "id")
        .order_by("example_id", "id")
    )
    by_example: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows.iterator(chunk_size=5000):
        by_example.setdefault(row[0], []).append(row)
    chosen: list[tuple[Any, int, int, bool]] = []
    for example_id, labels in by_example.items():
        final = [row for row in labels if row[2] in (AnnotationKind.GOLD, AnnotationKind.ADJUDICATED)]
        label = (final or labels)[-1][1]
        if label not in label_index:
            continue
        observed = labels[-1][3]
        reviewable = not final and len(labels) == 1
        chosen.append((observed, example_id, label_index[label], reviewable))
    # The newest labels matter most for where the model is wrong now; undated rows count as oldest.
    chosen.sort(key=lambda row: (row[0] is not None, row[0] or datetime.min, row[1]))
    chosen = chosen[-CV_MAX_LABELS:]
    chosen.sort(key=lambda row: row[1])
    return LabeledSet(
        ids=np.array([row[1] for row in chosen], dtype=np.int64),
        given=np.array([row[2] for row in chosen], dtype=np.int64),
        reviewable=np.array([row[3] for row in chosen], dtype=bool),
    )


def out_of_fold(X: Any, given: np.ndarray, labels: list[str], *, sparse: bool, model: Any) -> np.ndarray:
    """Return out-of-fold probabilities for labeled rows; in-sample from `model` when a class is too small to fold."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(given, minlength=len(labels))
    present = counts[counts > 0]
    folds = int(min(CV_FOLDS, present.min())) if len(present) >= 2 else 0
    if folds < 2:
        return predict_proba(model, X, labels)
    proba = np.zeros((len(given), len(labels)), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    names = np.array(labels, dtype=object)
    for train, test in splitter.split(np.zeros(len(given)), given):
        fold_model = train_model(
            X[train], names[given[train]].tolist(), sparse=sparse, config=TrainingConfig(seed=SEED)
        )
        proba[test] = predict_proba(fold_model, X[test], labels)
    return proba


def strata_values(project: Project, sample_ids: np.ndarray, field_name: str) -> tuple[str, list[str]] | None:
    """Return (field, value per sample id) to stratify exploration by, or None when no field suits."""
    metas = dict(Example.objects.filter(pk__in=sample_ids.tolist()).values_list("pk", "meta"))
    if not metas:
        return None
    if not field_name:
        present: Counter[str] = Counter()
        values: dict[str, set[str]] = {}
        for meta in metas.values():
            for key, value in (meta or {}).items():
                if isinstance(value, str | int | bool) and str(value).strip():
                    present[key] += 1
                    values.setdefault(key, set()).add(str(value))
        usable = [
            key
            for key, count in present.items()
            if count >= STRATA_MIN_PRESENT * len(metas) and 2 <= len(values[key]) <= STRATA_MAX_VALUES
        ]
        if not usable:
            return None
        field_name = min(usable, key=lambda key: (len(values[key]), key))
    return field_name, [str((metas.get(int(i)) or {}).get(field_name, "")) or "(none)" for i in sample_ids]


def vector_lookup(matrices: list[FeatureMatrix]) -> Callable[[np.ndarray], Any]:
    """Return a function giving the stored vector of each id (pool or labeled); a missing one is a zero row,
    which is a near duplicate of nothing."""

    def vectors(ids: np.ndarray) -> Any:
        parts = []
        for example_id in ids.tolist():
            for source in matrices:
                position = int(np.searchsorted(source.ids, example_id))
                if position < len(source.ids) and source.ids[position] == example_id:
                    parts.append(source.matrix[position : position + 1])
                    break
            else:
                width = matrices[0].matrix.shape[1]
                parts.append(sp.csr_matrix((1, width)) if sp.issparse(matrices[0].matrix) else np.zeros((1, width)))
        return sp.vstack(parts).tocsr() if sp.issparse(parts[0]) else np.vstack(parts)

    return vectors


def feedback_positions(project: Project, pool: np.ndarray) -> np.ndarray:
    """Return pool positions of examples that came from production predictions (origin feedback)."""
    ids = np.fromiter(
        Example.objects.filter(project=project, origin=ExampleOrigin.FEEDBACK).values_list("pk", flat=True),
        dtype=np.int64,
    )
    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.isin(pool, ids))


def llm_opinions(
    project: Project, pool: np.ndarray, label_index: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Return (pool positions, LLM label column, confidence) for pool examples with a standing LLM label."""
    rows = (
        Annotation.objects.filter(example__project=project, kind=AnnotationKind.LLM, status__in=LIVE_STATUSES)
        .values_list("example_id", "label__name", "confidence")
        .order_by("example_id", "id")
    )
    latest: dict[int, tuple[int, float]] = {}
    for example_id, label, confidence in rows.iterator(chunk_size=5000):
        if label in label_index:
            latest[example_id] = (label_index[label], 1.0 if confidence is None else float(confidence))
    if not latest:
        return None
    ids = np.array(sorted(latest), dtype=np.int64)
    positions = np.searchsorted(pool, ids)
    inside = (positions < len(pool)) & (pool[np.minimum(positions, len(pool) - 1)] == ids)
    if not inside.any():
        return None
    ids, positions = ids[inside], positions[inside]
    other = np.array([latest[int(i)][0] for i in ids], dtype=np.int64)
    confidence = np.array([latest[int(i)][1] for i in ids], dtype=np.float64)
    return positions, other, confidence
