"""LLM trust: lower bounds against scipy and the formula, calibrated synthetic LLMs with known answers, previews."""

from __future__ import annotations

import math
import re
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import binomtest

from models_app.ml.agreement import cohen_kappa
from models_app.ml.trust import (
    CONFIDENCE_INVALID,
    CONFIDENCE_LEVEL_RANGE,
    COUNTS_INVALID,
    CURVE_LENGTH_MISMATCH,
    LENGTH_MISMATCH,
    MAX_CURVE_POINTS,
    MIN_ACCEPTED_RANGE,
    PENDING_LENGTH_MISMATCH,
    REASON_NONE,
    REASON_TOO_FEW,
    REASON_UNSEEN,
    SCOPE_ALL,
    SCOPE_LABEL,
    TARGET_RANGE,
    THRESHOLDS_INVALID,
    UNKNOWN_METHOD,
    CurvePoint,
    Threshold,
    TrustReport,
    auto_accept_preview,
    choose_threshold,
    lower_bound,
    precision_coverage_curve,
    trust_report,
)


def wilson_reference(successes: int, trials: int, confidence_level: float) -> float:
    """Compute the one-sided Wilson score lower bound straight from the textbook formula, with stdlib z."""
    z = NormalDist().inv_cdf(confidence_level)
    rate = successes / trials
    centre = rate + z * z / (2 * trials)
    spread = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    return (centre - spread) / (1 + z * z / trials)


def calibrated_sample(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw confidences uniform on [0, 1] with P(correct | c) = c, so accepting c >= t has precision (1 + t) / 2."""
    rng = np.random.default_rng(seed)
    confidence = rng.random(size)
    return confidence, rng.random(size) < confidence


def as_labels(correct: np.ndarray, said: str = "spam", other: str = "ham") -> tuple[list[str], list[str]]:
    """Turn correctness flags into (LLM, human) label lists where the LLM always says ``said``."""
    return [said] * len(correct), [said if right else other for right in correct.tolist()]


# --- lower_bound ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "level"), [(95, 100, 0.95), (7, 10, 0.9), (1, 3, 0.99), (480, 500, 0.975)]
)
def test_wilson_matches_the_formula(successes: int, trials: int, level: float):
    assert lower_bound(successes, trials, confidence_level=level) == pytest.approx(
        wilson_reference(successes, trials, level), abs=1e-12
    )


def test_wilson_for_95_of_100_is_one_sided():
    # One-sided 95 % uses z = 1.645; the two-sided 95 % interval's z = 1.96 would give about 0.8882.
    assert lower_bound(95, 100) == pytest.approx(0.90084, abs=1e-5)


@pytest.mark.parametrize(("successes", "trials", "level"), [(95, 100, 0.95), (7, 10, 0.9), (1, 3, 0.99), (29, 30, 0.8)])
def test_clopper_pearson_matches_scipy_exact_interval(successes: int, trials: int, level: float):
    exact = binomtest(successes, trials).proportion_ci(method="exact", confidence_level=2 * level - 1)

    assert lower_bound(successes, trials, confidence_level=level, method="clopper_pearson") == pytest.approx(
        exact.low, abs=1e-10
    )


@pytest.mark.parametrize("method", ["wilson", "clopper_pearson"])
def test_lower_bound_edge_cases(method: str):
    assert lower_bound(0, 0, method=method) is None
    assert lower_bound(0, 25, method=method) == 0.0


def test_lower_bound_when_every_trial_succeeds():
    z = NormalDist().inv_cdf(0.95)

    assert lower_bound(40, 40) == pytest.approx(1 / (1 + z * z / 40), abs=1e-12)
    assert lower_bound(40, 40, method="clopper_pearson") == pytest.approx(0.05 ** (1 / 40), abs=1e-12)
    assert lower_bound(40, 40) < 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"successes": 5, "trials": 4}, COUNTS_INVALID.format(successes=5, trials=4)),
        ({"successes": -1, "trials": 4}, COUNTS_INVALID.format(successes=-1, trials=4)),
        ({"successes": 1.5, "trials": 4}, COUNTS_INVALID.format(successes=1.5, trials=4)),
        ({"successes": 1, "trials": 4, "method": "agresti"}, UNKNOWN_METHOD.format(method="agresti")),
        ({"successes": 1, "trials": 4, "confidence_level": 1.0}, CONFIDENCE_LEVEL_RANGE.format(confidence_level=1.0)),
        ({"successes": 1, "trials": 4, "confidence_level": 0.3}, CONFIDENCE_LEVEL_RANGE.format(confidence_level=0.3)),
    ],
)
def test_lower_bound_rejects_bad_input(kwargs: dict, message: str):
    with pytest.raises(ValueError) as error:
        lower_bound(**kwargs)
    assert str(error.value) == message


counts = st.integers(1, 5000).flatmap(lambda trials: st.tuples(st.integers(0, trials), st.just(trials)))


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    counts=counts,
    levels=st.tuples(st.floats(0.5, 0.999), st.floats(0.5, 0.999)),
    method=st.sampled_from(["wilson", "clopper_pearson"]),
)
def test_bound_lies_between_zero_and_the_rate_and_drops_with_confidence(
    counts: tuple[int, int], levels: tuple[float, float], method: str
):
    successes, trials = counts
    low_level, high_level = sorted(levels)

    loose = lower_bound(successes, trials, confidence_level=low_level, method=method)
    strict = lower_bound(successes, trials, confidence_level=high_level, method=method)

    assert 0.0 <= strict <= loose <= successes / trials


# --- precision_coverage_curve ---------------------------------------------------------------------------------


def test_curve_is_cumulative_from_the_top():
    curve = precision_coverage_curve([0.6, 0.9, 0.8, 0.3, 0.8], [True, True, False, False, True])

    assert [point.threshold for point in curve] == [0.9, 0.8, 0.6, 0.3]
    assert [point.accepted for point in curve] == [1, 3, 4, 5]
    assert [point.correct for point in curve] == [1, 2, 3, 3]
    assert [point.coverage for point in curve] == pytest.approx([0.2, 0.6, 0.8, 1.0])
    assert [point.precision for point in curve] == pytest.approx([1.0, 2 / 3, 3 / 4, 3 / 5])
    assert [point.lower_bound for point in curve] == pytest.approx(
        [
            wilson_reference(1, 1, 0.95),
            wilson_reference(2, 3, 0.95),
            wilson_reference(3, 4, 0.95),
            wilson_reference(3, 5, 0.95),
        ],
        abs=1e-12,
    )


def test_curve_with_thresholds_that_accept_nothing():
    curve = precision_coverage_curve([0.2, 0.4], [True, False], thresholds=[0.5, 1.0, 0.0])

    assert curve[0] == CurvePoint(threshold=1.0, accepted=0, coverage=0.0, correct=0, precision=None, lower_bound=None)
    assert curve[1].accepted == 0
    assert (curve[2].accepted, curve[2].correct, curve[2].coverage) == (2, 1, 1.0)
    assert precision_coverage_curve([], []) == ()


def test_curve_thins_large_inputs_to_about_200_points():
    confidence, correct = calibrated_sample(seed=3, size=20_000)

    curve = precision_coverage_curve(confidence, correct)

    assert 150 <= len(curve) <= MAX_CURVE_POINTS
    assert curve[0].threshold == confidence.max()
    assert (curve[-1].threshold, curve[-1].accepted, curve[-1].coverage) == (confidence.min(), 20_000, 1.0)
    steps = np.diff([point.accepted for point in curve])
    assert steps.max() <= 2 * 20_000 / MAX_CURVE_POINTS


confidences = st.floats(0, 1) | st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.9, 1.0])


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(confidences, st.booleans()), max_size=60),
    thresholds=st.none() | st.lists(st.floats(-0.5, 1.5), min_size=1, max_size=12),
    method=st.sampled_from(["wilson", "clopper_pearson"]),
)
def test_curve_matches_brute_force(rows: list[tuple[float, bool]], thresholds: list[float] | None, method: str):
    confidence = [score for score, _ in rows]
    correct = [right for _, right in rows]

    curve = precision_coverage_curve(confidence, correct, thresholds=thresholds, method=method)

    expected_cuts = sorted(set(confidence if thresholds is None else thresholds), reverse=True)
    assert [point.threshold for point in curve] == expected_cuts
    for point in curve:
        accepted = sum(score >= point.threshold for score in confidence)
        right = sum(score >= point.threshold and ok for score, ok in rows)
        assert (point.accepted, point.correct) == (accepted, right)
        assert point.coverage == (accepted / len(rows) if rows else 0.0)
        if accepted:
            assert point.precision == right / accepted
            assert point.lower_bound == lower_bound(right, accepted, method=method)
            assert 0.0 <= point.lower_bound <= point.precision
        else:
            assert point.precision is None and point.lower_bound is None
    coverages = [point.coverage for point in curve]
    assert coverages == sorted(coverages)


def test_curve_rejects_bad_input():
    with pytest.raises(ValueError) as error:
        precision_coverage_curve([0.1, 0.2], [True])
    assert str(error.value) == CURVE_LENGTH_MISMATCH.format(confidence=2, correct=1)
    with pytest.raises(ValueError, match=re.escape(THRESHOLDS_INVALID)):
        precision_coverage_curve([0.1], [True], thresholds=[float("nan")])
    for bad in ([0.1, 1.2], [-0.01], [float("nan")], [float("inf")], [[0.1, 0.2]]):
        with pytest.raises(ValueError) as error:
            precision_coverage_curve(bad, [True] * len(bad))
        assert str(error.value) == CONFIDENCE_INVALID


# --- choose_threshold -----------------------------------------------------------------------------------------


def point(threshold: float, accepted: int, lower: float | None) -> CurvePoint:
    """Build a curve point where only the threshold, the accepted count and the bound matter."""
    return CurvePoint(threshold, accepted, accepted / 400, accepted, 1.0 if accepted else None, lower)


def test_choose_threshold_takes_the_lowest_qualifying_even_past_a_dip():
    points = [
        point(0.99, 10, 0.99),  # too few accepted
        point(0.9, 40, 0.97),
        point(0.8, 80, 0.93),  # precision dips ...
        point(0.7, 150, 0.951),  # ... and recovers: the lowest qualifying threshold
        point(0.5, 400, 0.90),
    ]

    assert choose_threshold(points, target=0.95) == points[3]
    assert choose_threshold(points[::-1], target=0.95) == points[3]
    assert choose_threshold(points, target=0.96) == points[1]
    assert choose_threshold(points, target=0.95, min_accepted=200) is None
    assert choose_threshold(points, target=0.98, min_accepted=5) == points[0]
    assert choose_threshold([point(1.0, 0, None)], target=0.5, min_accepted=1) is None


@pytest.mark.parametrize("target", [0.0, 1.0, 1.5])
def test_choose_threshold_rejects_targets_outside_the_open_unit_interval(target: float):
    with pytest.raises(ValueError) as error:
        choose_threshold([], target=target)
    assert str(error.value) == TARGET_RANGE.format(target=target)


# --- trust_report on synthetic LLMs with known answers --------------------------------------------------------


def test_calibrated_llm_gets_the_threshold_theory_predicts_and_it_holds_on_fresh_data():
    size, target, level = 50_000, 0.95, 0.95
    confidence, correct = calibrated_sample(seed=0, size=size)
    llm, human = as_labels(correct)

    report = trust_report(llm, confidence, human, target=target, confidence_level=level)

    # Accepting c >= t has true precision (1 + t) / 2, reached at t = 0.9; the bound needs a margin on top of it.
    z = NormalDist().inv_cdf(level)
    margin = lambda t: z * math.sqrt(target * (1 - target) / (size * (1 - t)))  # noqa: E731
    expected = brentq(lambda t: (1 + t) / 2 - margin(t) - target, 0.9, 0.99)
    chosen = report.overall
    assert chosen.threshold == pytest.approx(expected, abs=0.02)
    assert chosen.threshold > 0.9
    assert chosen.lower_bound >= target and chosen.accepted >= 30
    assert chosen.coverage == pytest.approx(1 - chosen.threshold, abs=0.01)
    assert chosen.support == size
    fresh_confidence, fresh_correct = calibrated_sample(seed=1, size=200_000)
    assert fresh_correct[fresh_confidence >= chosen.threshold].mean() >= target


def test_the_bound_rarely_lets_a_bad_threshold_through():
    # The true precision of the chosen set is (1 + t) / 2; without the bound about half of the choices would fail.
    chosen = []
    for seed in range(150):
        confidence, correct = calibrated_sample(seed=100 + seed, size=3000)
        llm, human = as_labels(correct)
        threshold = trust_report(llm, confidence, human).overall.threshold
        if threshold is not None:
            chosen.append(threshold)

    assert len(chosen) >= 100
    failures = sum((1 + threshold) / 2 < 0.95 for threshold in chosen)
    assert failures / len(chosen) <= 0.12


def test_llm_never_better_than_80_percent_gets_no_threshold():
    rng = np.random.default_rng(5)
    confidence = rng.random(5000)
    llm, human = as_labels(rng.random(5000) < 0.8)

    report = trust_report(llm, confidence, human)

    overall = report.overall
    assert (overall.threshold, overall.precision, overall.lower_bound, overall.accepted) == (None, None, None, 0)
    assert overall.coverage == 0.0 and overall.support == 5000
    assert overall.reason.startswith("Precision never reaches 95%, even at the highest confidence")
    assert report.per_label["spam"].threshold is None
    assert report.agreement == pytest.approx(0.8, abs=0.02)


def test_too_few_items_get_no_threshold_however_good():
    llm, human = as_labels(np.ones(20, dtype=bool))

    report = trust_report(llm, np.linspace(0.9, 1, 20), human)

    assert report.overall.threshold is None
    assert report.overall.reason == REASON_TOO_FEW.format(support=20, scope=SCOPE_ALL, min_accepted=30)
    assert report.overall.reason == "Only 20 items have both an LLM and a human label; need ≥ 30."
    assert report.per_label["spam"].reason == REASON_TOO_FEW.format(
        support=20, scope=SCOPE_LABEL.format(label="spam"), min_accepted=30
    )
    assert report.per_label["spam"].reason == "Only 20 items the LLM labeled 'spam' have a human label; need ≥ 30."


def test_perfect_but_thin_evidence_does_not_clear_the_bound():
    # 40 of 40 right: precision 100 %, but the Wilson bound 1 / (1 + z² / 40) is only about 93.7 %.
    llm, human = as_labels(np.ones(40, dtype=bool))

    report = trust_report(llm, np.linspace(0.5, 1, 40), human)

    assert report.overall.threshold is None
    assert report.overall.reason.startswith("Precision reaches 100% at confidence ≥ 0.5 over 40 items, but its 95%")
    assert trust_report(llm, np.linspace(0.5, 1, 40), human, target=0.9).overall.threshold == 0.5


def test_empty_report():
    report = trust_report([], [], [])

    assert (report.n, report.agreement, report.kappa, report.curve, report.per_label) == (0, None, None, (), {})
    assert report.overall.reason == REASON_NONE.format(scope=SCOPE_ALL, min_accepted=30)


def test_reliable_label_gets_a_threshold_and_unreliable_one_does_not():
    rng = np.random.default_rng(11)
    size = 1500
    spam_right = rng.random(size) < 0.99
    ham_right = rng.random(size) < 0.7
    llm = ["spam"] * size + ["ham"] * size
    human = [("spam" if right else "ham") for right in spam_right] + [
        ("ham" if right else "spam") for right in ham_right
    ]
    confidence = rng.random(2 * size)

    report = trust_report(llm, confidence, human)

    spam, ham = report.per_label["spam"], report.per_label["ham"]
    assert set(report.per_label) == set(report.per_label_curve) == {"spam", "ham"}
    assert spam.threshold is not None and spam.lower_bound >= 0.95
    assert spam.support == size and spam.coverage == spam.accepted / size
    assert spam.accepted > size / 2
    assert spam.reason.startswith(f"Confidence ≥ {spam.threshold:.4g} accepts {spam.accepted} of {size} items")
    assert ham.threshold is None and ham.support == size
    assert ham.reason.startswith("Precision never reaches 95%")
    assert report.per_label_curve["spam"][-1].accepted == size
    assert report.per_label_curve["spam"][-1].precision == pytest.approx(spam_right.mean())


@pytest.mark.parametrize("seed", [0, 4])
def test_kappa_and_agreement_match_the_agreement_module(seed: int):
    rng = np.random.default_rng(seed)
    names = np.array(["ham", "spam", "other"])
    llm = names[rng.integers(0, 3, 400)].tolist()
    human = [said if rng.random() < 0.7 else str(rng.choice(names)) for said in llm]

    report = trust_report(llm, rng.random(400), human)

    assert report.n == 400
    assert report.kappa == cohen_kappa(llm, human)
    assert report.agreement == pytest.approx(np.mean(np.array(llm) == np.array(human)))
    assert report.curve[-1].precision == pytest.approx(report.agreement)
    assert (report.target, report.confidence_level) == (0.95, 0.95)


def test_clopper_pearson_option_reaches_the_curve():
    confidence, correct = calibrated_sample(seed=2, size=500)
    llm, human = as_labels(correct)

    report = trust_report(llm, confidence, human, method="clopper_pearson", confidence_level=0.9)

    top = report.curve[40]
    assert top.lower_bound == lower_bound(top.correct, top.accepted, confidence_level=0.9, method="clopper_pearson")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((["a", "b"], [0.5], ["a", "b"]), {}, LENGTH_MISMATCH.format(llm=2, confidence=1, human=2)),
        ((["a"], [0.5], ["a", "b"]), {}, LENGTH_MISMATCH.format(llm=1, confidence=1, human=2)),
        ((["a"], [float("nan")], ["a"]), {}, CONFIDENCE_INVALID),
        ((["a"], [1.01], ["a"]), {}, CONFIDENCE_INVALID),
        ((["a"], [-0.5], ["a"]), {}, CONFIDENCE_INVALID),
        ((["a"], [0.5], ["a"]), {"target": 1.0}, TARGET_RANGE.format(target=1.0)),
        ((["a"], [0.5], ["a"]), {"target": 0}, TARGET_RANGE.format(target=0)),
        ((["a"], [0.5], ["a"]), {"min_accepted": 0}, MIN_ACCEPTED_RANGE.format(min_accepted=0)),
        ((["a"], [0.5], ["a"]), {"method": "exact"}, UNKNOWN_METHOD.format(method="exact")),
    ],
)
def test_trust_report_rejects_bad_input(args: tuple, kwargs: dict, message: str):
    with pytest.raises(ValueError) as error:
        trust_report(*args, **kwargs)
    assert str(error.value) == message


# --- auto_accept_preview --------------------------------------------------------------------------------------


def rule(label: str | None, threshold: float | None, precision: float | None, lower: float | None) -> Threshold:
    """Build a threshold whose counts do not matter to the preview."""
    reason = "no" if threshold is None else "yes"
    return Threshold(label, threshold, precision, lower, 0.5, 100, 200, reason)


HAND_REPORT = TrustReport(
    n=400,
    agreement=0.9,
    kappa=0.8,
    overall=rule(None, 0.9, 0.97, 0.955),
    per_label={"spam": rule("spam", 0.8, 0.96, 0.952), "ham": rule("ham", None, None, None)},
    curve=(),
    per_label_curve={},
    target=0.95,
    confidence_level=0.95,
)
PENDING_LABELS = ["spam", "spam", "ham", "ham", "eggs", "spam"]
PENDING_CONFIDENCE = [0.95, 0.85, 0.95, 0.5, 0.99, 0.2]


def test_preview_with_one_threshold_for_all_labels():
    preview = auto_accept_preview(HAND_REPORT, PENDING_LABELS, PENDING_CONFIDENCE)

    assert preview["mode"] == "overall"
    assert (preview["pending"], preview["accepted"], preview["threshold"]) == (6, 3, 0.9)
    assert preview["coverage"] == 0.5
    assert {label: entry["accepted"] for label, entry in preview["by_label"].items()} == {
        "eggs": 1,
        "ham": 1,
        "spam": 1,
    }
    assert {label: entry["pending"] for label, entry in preview["by_label"].items()} == {"eggs": 1, "ham": 2, "spam": 3}
    assert list(preview["by_label"]) == ["eggs", "ham", "spam"]
    assert preview["expected_precision"] == pytest.approx(0.97)
    assert preview["lower_bound"] == pytest.approx(0.955)
    assert preview["expected_errors"] == pytest.approx(3 * 0.03)
    assert preview["reason"] == "yes"


def test_preview_with_a_threshold_per_label():
    preview = auto_accept_preview(HAND_REPORT, PENDING_LABELS, PENDING_CONFIDENCE, per_label=True)

    assert preview["mode"] == "per_label" and preview["threshold"] is None
    assert preview["accepted"] == 2
    by_label = preview["by_label"]
    assert (by_label["spam"]["accepted"], by_label["spam"]["threshold"]) == (2, 0.8)
    assert (by_label["ham"]["accepted"], by_label["ham"]["threshold"], by_label["ham"]["reason"]) == (0, None, "no")
    assert by_label["eggs"]["accepted"] == 0
    assert by_label["eggs"]["reason"] == REASON_UNSEEN.format(label="eggs")
    assert preview["expected_precision"] == pytest.approx(0.96)
    assert preview["expected_errors"] == pytest.approx(2 * 0.04)


def test_preview_mixes_per_label_precision_by_accepted_count():
    report = TrustReport(
        n=400,
        agreement=0.9,
        kappa=0.8,
        overall=rule(None, None, None, None),
        per_label={"a": rule("a", 0.5, 0.99, 0.97), "b": rule("b", 0.5, 0.95, 0.93)},
        curve=(),
        per_label_curve={},
        target=0.9,
        confidence_level=0.95,
    )

    preview = auto_accept_preview(report, ["a", "b", "b", "b"], [0.6, 0.6, 0.7, 0.1], per_label=True)

    assert preview["accepted"] == 3
    assert preview["expected_precision"] == pytest.approx((0.99 + 2 * 0.95) / 3)
    assert preview["lower_bound"] == pytest.approx((0.97 + 2 * 0.93) / 3)
    overall = auto_accept_preview(report, ["a", "b"], [0.6, 0.6])
    assert (overall["accepted"], overall["expected_precision"], overall["expected_errors"]) == (0, None, 0.0)


def test_preview_follows_a_real_report():
    confidence, correct = calibrated_sample(seed=0, size=20_000)
    llm, human = as_labels(correct)
    report = trust_report(llm, confidence, human)
    pending = np.random.default_rng(9).random(1000)

    preview = auto_accept_preview(report, ["spam"] * 1000, pending)

    assert preview["accepted"] == int(np.count_nonzero(pending >= report.overall.threshold))
    assert preview["expected_precision"] == report.overall.precision


def test_preview_rejects_bad_input():
    with pytest.raises(ValueError) as error:
        auto_accept_preview(HAND_REPORT, ["spam"], [0.5, 0.6])
    assert str(error.value) == PENDING_LENGTH_MISMATCH.format(labels=1, confidence=2)
    with pytest.raises(ValueError, match=re.escape(CONFIDENCE_INVALID)):
        auto_accept_preview(HAND_REPORT, ["spam"], [2.0])
    assert auto_accept_preview(HAND_REPORT, [], [])["coverage"] is None
