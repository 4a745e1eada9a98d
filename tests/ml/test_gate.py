"""The evaluate-before-deploy gate's checks, on hand-made predictions (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from models_app.ml.gate import (
    CHECK_HOLDOUT,
    CHECK_MACRO_F1,
    CHECK_RECALL,
    CHECK_RULES,
    REASON_RULES_ALL_ABSTAIN,
    GateSettings,
    Scored,
    gate_decide,
)

LABELS = ["neg", "pos"]


def scored(predicted: list[str], answered: list[bool] | None = None) -> Scored:
    proba = np.array([[0.9, 0.1] if label == "neg" else [0.2, 0.8] for label in predicted])
    return Scored(predicted, proba, None if answered is None else np.array(answered))


def check(result, name):
    return next(item for item in result.checks if item.name == name)


TRUTH = ["neg"] * 30 + ["pos"] * 10


def test_a_first_version_must_beat_the_majority_baseline():
    always_neg = scored(["neg"] * 40)
    result = gate_decide(y_true=TRUTH, labels=LABELS, majority="neg", candidate=always_neg, published=None)
    assert not result.passed
    assert not check(result, CHECK_MACRO_F1).passed
    assert "does not beat the majority-class baseline" in result.reasons[0]

    good = scored(["neg"] * 30 + ["pos"] * 8 + ["neg"] * 2)
    result = gate_decide(y_true=TRUTH, labels=LABELS, majority="neg", candidate=good, published=None)
    assert result.passed, result.reasons
    assert result.comparison["candidate"]["macro_f1"] > result.comparison["candidate"]["baseline"]["macro_f1"]


def test_a_worse_candidate_fails_and_a_tolerance_lets_a_small_drop_through():
    published = scored(["neg"] * 30 + ["pos"] * 10)
    candidate = scored(["neg"] * 30 + ["pos"] * 9 + ["neg"])
    strict = gate_decide(
        y_true=TRUTH, labels=LABELS, majority="neg", candidate=candidate, published=published, published_number=3
    )
    assert not strict.passed
    assert not check(strict, CHECK_MACRO_F1).passed
    assert "published v3" in check(strict, CHECK_MACRO_F1).detail
    # The recall of "pos" drops by 0.1 > 0.05, too.
    assert check(strict, CHECK_RECALL).values["drops"] == {"pos": pytest.approx(0.1)}

    loose = gate_decide(
        y_true=TRUTH,
        labels=LABELS,
        majority="neg",
        candidate=candidate,
        published=published,
        published_number=3,
        settings=GateSettings(tolerance=0.05, recall_drop=0.15),
    )
    assert loose.passed, loose.reasons


def test_a_better_macro_f1_still_fails_when_one_class_recall_drops():
    truth = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    labels = ["a", "b", "c"]

    def as_scored(predicted):
        proba = np.array([[1.0 if name == label else 0.0 for name in labels] for label in predicted])
        return Scored(predicted, proba)

    published = as_scored(["a"] * 10 + ["b"] * 10 + ["c"] * 6 + ["a"] * 4)
    # A better macro-F1 overall (0.898 against 0.861), but "b" loses three hits while "c" gains four.
    candidate = as_scored(["a"] * 10 + ["b"] * 7 + ["a"] * 3 + ["c"] * 10)
    result = gate_decide(
        y_true=truth, labels=labels, majority="a", candidate=candidate, published=published, published_number=1
    )
    assert check(result, CHECK_MACRO_F1).passed
    assert not check(result, CHECK_RECALL).passed
    assert "b (1.00 → 0.70)" in check(result, CHECK_RECALL).detail
    assert not result.passed


def test_a_holdout_below_the_minimum_fails_whatever_the_scores():
    result = gate_decide(
        y_true=TRUTH[:5] + TRUTH[-5:],
        labels=LABELS,
        majority="neg",
        candidate=scored(TRUTH[:5] + TRUTH[-5:]),
        published=None,
        settings=GateSettings(min_holdout=30),
    )
    assert not check(result, CHECK_HOLDOUT).passed
    assert not result.passed
    assert result.reasons[0].startswith("The shared holdout has only 10 examples")


def test_rules_that_make_it_worse_fail_and_abstaining_is_not_an_error():
    candidate = scored(["neg"] * 30 + ["pos"] * 8 + ["neg"] * 2)
    # A rule forcing "pos" onto ten true negatives makes it worse.
    forced = scored(["pos"] * 10 + ["neg"] * 20 + ["pos"] * 8 + ["neg"] * 2)
    worse = gate_decide(
        y_true=TRUTH, labels=LABELS, majority="neg", candidate=candidate, published=None, candidate_with_rules=forced
    )
    assert not check(worse, CHECK_RULES).passed
    # Abstaining on the two misses sends them to people: the answered rows are all right.
    abstain = scored(candidate.y_pred, answered=[True] * 38 + [False] * 2)
    better = gate_decide(
        y_true=TRUTH, labels=LABELS, majority="neg", candidate=candidate, published=None, candidate_with_rules=abstain
    )
    assert check(better, CHECK_RULES).passed
    assert better.comparison["candidate_with_rules"]["size"] == 38
    assert better.comparison["candidate_with_rules"]["macro_f1"] == pytest.approx(1.0)

    nothing = scored(candidate.y_pred, answered=[False] * 40)
    none_answered = gate_decide(
        y_true=TRUTH, labels=LABELS, majority="neg", candidate=candidate, published=None, candidate_with_rules=nothing
    )
    assert check(none_answered, CHECK_RULES).detail == REASON_RULES_ALL_ABSTAIN
    assert not none_answered.passed


def test_failed_reasons_come_first_and_lengths_are_checked():
    result = gate_decide(y_true=TRUTH, labels=LABELS, majority="neg", candidate=scored(["neg"] * 40), published=None)
    assert [item.passed for item in sorted(result.checks, key=lambda c: c.passed)][0] is False
    assert result.reasons[0] == check(result, CHECK_MACRO_F1).detail
    with pytest.raises(ValueError):
        gate_decide(y_true=TRUTH, labels=LABELS, majority="neg", candidate=scored(["neg"]), published=None)
