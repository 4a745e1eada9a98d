"""Evaluation metrics for one model on one holdout, in a form the gate compares and the dashboard shows.

Everything is computed from integer counts with numpy, in a fixed label order given by the caller, so two models
scored on the same holdout with the same ``labels`` produce directly comparable reports.

* ``macro_f1`` averages F1 over the labels that occur in ``y_true`` or ``y_pred`` (the labels scikit-learn uses
  by default). A label nobody used and the model never predicted has no F1 at all, so it is left out rather than
  counted as zero; it still appears in ``per_class`` with zeros. Undefined precision or recall counts as 0.
* ``ece`` is the expected calibration error over 15 equal-width bins of top-label confidence ``max(proba)``, each
  bin ``(lo, hi]``; a bin's gap is ``|accuracy - mean confidence|``, weighted by its share of rows.
* ``majority_baseline`` is what always predicting the training majority class would score on this holdout: the
  floor any model has to beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ECE_BINS = 15

EMPTY_EVALUATION = "Cannot evaluate on an empty holdout."
LENGTH_MISMATCH = "y_true, y_pred and proba must have one entry per row: got {true}, {pred} and {proba}."
PROBA_SHAPE = "proba must have one column per label in `labels` order: expected {expected} columns, got {got}."
UNKNOWN_LABELS = "Labels missing from `labels`: {labels}."
DUPLICATE_LABELS = "`labels` must not repeat a label."


@dataclass(frozen=True)
class Report:
    """Holdout metrics of one model: overall, per class, confusion, calibration and the majority baseline."""

    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float | int]]
    confusion: list[list[int]]
    labels: list[str]
    ece: float | None
    majority_baseline: dict[str, Any]
    size: int

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON values, to store on the evaluation row."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report stored with ``to_dict``."""
        return cls(**data)


def _encode(values: Sequence[str], index: dict[str, int]) -> np.ndarray:
    """Map labels to their column in ``labels``; refuse labels outside it so no row is silently dropped."""
    unknown = sorted({value for value in values if value not in index})
    if unknown:
        raise ValueError(UNKNOWN_LABELS.format(labels=", ".join(map(repr, unknown))))
    return np.fromiter((index[value] for value in values), dtype=np.int64, count=len(values))


def _confusion(true: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Count (true, predicted) pairs; rows are true labels, columns predicted ones."""
    return np.bincount(true * n_labels + pred, minlength=n_labels * n_labels).reshape(n_labels, n_labels)


def _scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Return precision, recall, F1 and support per label, and macro F1 over the labels in use."""
    true_positive = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(support > 0, true_positive / support, 0.0)
        f1 = np.where(support + predicted > 0, 2 * true_positive / (support + predicted), 0.0)
    in_use = (support + predicted) > 0
    macro_f1 = float(f1[in_use].mean()) if in_use.any() else 0.0
    return precision, recall, f1, support, macro_f1


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Return the expected calibration error, so a model whose 0.9 means 90 % right can be told from one that lies."""
    if len(confidence) == 0:
        raise ValueError(EMPTY_EVALUATION)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    confidence_sums = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sums = np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
    return float(np.abs(correct_sums - confidence_sums).sum() / len(confidence))


def classification_report(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    proba: np.ndarray | None,
    labels: Sequence[str],
    *,
    train_majority: str,
) -> Report:
    """Score predictions against the holdout truth; ``proba`` columns follow ``labels``, or None to skip ``ece``."""
    labels = list(labels)
    index = {label: position for position, label in enumerate(labels)}
    if len(index) != len(labels):
        raise ValueError(DUPLICATE_LABELS)
    size = len(y_true)
    if size == 0:
        raise ValueError(EMPTY_EVALUATION)
    proba_rows = size if proba is None else len(proba)
    if len(y_pred) != size or proba_rows != size:
        raise ValueError(LENGTH_MISMATCH.format(true=size, pred=len(y_pred), proba=proba_rows))
    true = _encode(y_true, index)
    pred = _encode(y_pred, index)
    majority = _encode([train_majority], index)[0]

    confusion = _confusion(true, pred, len(labels))
    precision, recall, f1, support, macro_f1 = _scores(confusion)
    per_class = {
        label: {
            "precision": float(precision[position]),
            "recall": float(recall[position]),
            "f1": float(f1[position]),
            "support": int(support[position]),
        }
        for position, label in enumerate(labels)
    }

    ece = None
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim != 2 or proba.shape[1] != len(labels):
            raise ValueError(PROBA_SHAPE.format(expected=len(labels), got=proba.shape[-1] if proba.ndim else 0))
        ece = expected_calibration_error(proba.max(axis=1), true == pred)

    baseline_confusion = _confusion(true, np.full(size, majority), len(labels))
    return Report(
        accuracy=float(np.trace(confusion) / size),
        macro_f1=macro_f1,
        per_class=per_class,
        confusion=confusion.tolist(),
        labels=labels,
        ece=ece,
        majority_baseline={
            "label": train_majority,
            "accuracy": float(np.trace(baseline_confusion) / size),
            "macro_f1": _scores(baseline_confusion)[4],
        },
        size=size,
    )
