"""Holdout metrics: parity with scikit-learn, a hand-computed calibration error and the majority baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from models_app.ml.metrics import (
    EMPTY_EVALUATION,
    UNKNOWN_LABELS,
    Report,
    classification_report,
    expected_calibration_error,
)

LABELS = ["ham", "spam", "other"]


def random_predictions(seed: int, size: int = 300) -> tuple[list[str], list[str], np.ndarray]:
    """Make noisy three-class predictions with probabilities whose argmax is the prediction."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 3, size=size)
    proba = rng.dirichlet(np.ones(3), size=size)
    proba[np.arange(size), true] += rng.random(size)
    proba /= proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    return [LABELS[i] for i in true], [LABELS[i] for i in pred], proba


def slow_ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """Compute ECE with an explicit loop over (lo, hi] bins, to check the vectorised one."""
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = (confidence > lo) & (confidence <= hi) if b else (confidence <= hi)
        if members.any():
            total += members.sum() / len(confidence) * abs(correct[members].mean() - confidence[members].mean())
    return total


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_report_matches_sklearn(seed: int):
    y_true, y_pred, proba = random_predictions(seed)

    report = classification_report(y_true, y_pred, proba, LABELS, train_majority="spam")

    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    assert report.size == 300
    assert report.labels == LABELS
    assert report.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert report.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert report.confusion == confusion_matrix(y_true, y_pred, labels=LABELS).tolist()
    for position, label in enumerate(LABELS):
        assert report.per_class[label] == {
            "precision": pytest.approx(precision[position]),
            "recall": pytest.approx(recall[position]),
            "f1": pytest.approx(f1[position]),
            "support": int(support[position]),
        }
    correct = np.array(y_true) == np.array(y_pred)
    assert report.ece == pytest.approx(slow_ece(proba.max(axis=1), correct))


def test_ece_on_a_hand_computed_example():
    # Top-label confidences 0.9 and 0.92 share bin (13/15, 14/15]; 0.7, 0.55 and 0.62 sit alone in theirs.
    labels = ["ham", "spam"]
    proba = np.array([[0.1, 0.9], [0.92, 0.08], [0.7, 0.3], [0.45, 0.55], [0.38, 0.62]])
    y_pred = ["spam", "ham", "ham", "spam", "spam"]
    y_true = ["spam", "spam", "ham", "ham", "spam"]

    report = classification_report(y_true, y_pred, proba, labels, train_majority="ham")

    # (2 * |0.5 - 0.91| + |1 - 0.7| + |0 - 0.55| + |1 - 0.62|) / 5 = 2.05 / 5
    assert report.ece == pytest.approx(0.41)
    assert report.accuracy == pytest.approx(0.6)


def test_ece_is_zero_when_confidence_matches_accuracy():
    assert expected_calibration_error(np.ones(4), np.ones(4, dtype=bool)) == 0.0
    confidence = np.full(10, 0.75)
    correct = np.array([True] * 7 + [False] * 3)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.05)


def test_majority_baseline_scores_always_predicting_the_training_majority():
    y_true, y_pred, proba = random_predictions(3)

    report = classification_report(y_true, y_pred, proba, LABELS, train_majority="other")

    always = ["other"] * len(y_true)
    assert report.majority_baseline == {
        "label": "other",
        "accuracy": pytest.approx(accuracy_score(y_true, always)),
        "macro_f1": pytest.approx(f1_score(y_true, always, average="macro", zero_division=0)),
    }


def test_an_unused_label_is_reported_but_not_averaged():
    y_true = ["ham", "spam", "spam", "ham"]
    y_pred = ["ham", "spam", "ham", "ham"]

    report = classification_report(y_true, y_pred, None, LABELS, train_majority="ham")

    assert report.per_class["other"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report.macro_f1 == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert report.ece is None
    assert report.confusion == [[2, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_report_round_trips_through_json():
    y_true, y_pred, proba = random_predictions(5, size=40)
    report = classification_report(y_true, y_pred, proba, LABELS, train_majority="ham")

    assert Report.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_bad_inputs_raise():
    with pytest.raises(ValueError) as error:
        classification_report([], [], None, LABELS, train_majority="ham")
    assert str(error.value) == EMPTY_EVALUATION
    with pytest.raises(ValueError) as error:
        classification_report(["ham"], ["maybe"], None, LABELS, train_majority="ham")
    assert str(error.value) == UNKNOWN_LABELS.format(labels="'maybe'")
    with pytest.raises(ValueError):
        classification_report(["ham"], ["ham", "spam"], None, LABELS, train_majority="ham")
    with pytest.raises(ValueError):
        classification_report(["ham"], ["ham"], np.ones((1, 2)), LABELS, train_majority="ham")
