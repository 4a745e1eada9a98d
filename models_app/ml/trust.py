"""How far to trust the LLM's pre-labels: precision against confidence, and a threshold for auto-accepting them.

On items that have both an LLM label (with its confidence) and a human label, an LLM label is *correct* when it
equals the human one. Accepting every LLM label with confidence ``>= t`` gives a precision/coverage curve over
``t``, computed cumulatively from the most confident item down.

A threshold is chosen on a *lower* one-sided confidence bound of precision, not on precision itself (as SageMaker
Ground Truth does for its automated labels): the threshold is the lowest one, so the most coverage, whose bound is
at least ``target`` over at least ``min_accepted`` accepted items. Without enough evidence no threshold is chosen,
and the ``reason`` says why in one sentence for the page.

* The bound covers the whole accepted set at the chosen threshold (every item with confidence ``>= t``), not the
  items near ``t``: precision is not monotone in ``t``, and the least confident accepted items may be worse.
* Every point of the curve is tested and one is picked, so the guarantee is per threshold, not simultaneous: the
  chance that the chosen set's true precision is below ``target`` can exceed ``1 - confidence_level`` somewhat.
* Per-label thresholds group items by the LLM's predicted label: they bound how often "the LLM said X" is right.

Pure: labels and confidences in, frozen dataclasses out. Nothing here imports Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import beta, norm

from models_app.ml.agreement import cohen_kappa

MAX_CURVE_POINTS = 200
METHODS = ("wilson", "clopper_pearson")

LENGTH_MISMATCH = (
    "llm_labels, confidence and human_labels must have one entry per item: got {llm}, {confidence} and {human}."
)
CURVE_LENGTH_MISMATCH = "confidence and correct must have one entry per item: got {confidence} and {correct}."
PENDING_LENGTH_MISMATCH = (
    "pending_labels and pending_confidence must have one entry per item: got {labels} and {confidence}."
)
CONFIDENCE_INVALID = "Confidences must be a flat sequence of finite numbers in [0, 1]."
THRESHOLDS_INVALID = "Thresholds must be a flat sequence of finite numbers."
TARGET_RANGE = "target must lie strictly between 0 and 1, got {target}."
CONFIDENCE_LEVEL_RANGE = "confidence_level must lie in [0.5, 1) for a lower bound, got {confidence_level}."
MIN_ACCEPTED_RANGE = "min_accepted must be an integer of at least 1, got {min_accepted}."
COUNTS_INVALID = "Need integers with 0 <= successes <= trials, got {successes} of {trials}."
UNKNOWN_METHOD = "Unknown bound method {method!r}: choose from " + ", ".join(METHODS) + "."

SCOPE_ALL = "items have both an LLM and a human label"
SCOPE_LABEL = "items the LLM labeled {label!r} have a human label"
REASON_NONE = "No {scope} yet; need ≥ {min_accepted}."
REASON_TOO_FEW = "Only {support} {scope}; need ≥ {min_accepted}."
REASON_NEVER_REACHES = (
    "Precision never reaches {target}, even at the highest confidence: the best {level} lower bound is "
    "{lower_bound} ({precision} precision) at confidence ≥ {threshold:.4g} over {accepted} items."
)
REASON_TOO_UNCERTAIN = (
    "Precision reaches {precision} at confidence ≥ {threshold:.4g} over {accepted} items, but its {level} lower "
    "bound of {lower_bound} stays below the {target} target."
)
REASON_CHOSEN = (
    "Confidence ≥ {threshold:.4g} accepts {accepted} of {support} items ({coverage}) at {precision} precision, "
    "with a {level} lower bound of {lower_bound} ≥ {target}."
)
REASON_UNSEEN = "No items the LLM labeled {label!r} have a human label yet, so none are auto-accepted."


@dataclass(frozen=True)
class CurvePoint:
    """What accepting every LLM label with confidence >= ``threshold`` gives on the evaluated items."""

    threshold: float
    accepted: int
    coverage: float
    correct: int
    precision: float | None
    lower_bound: float | None


@dataclass(frozen=True)
class Threshold:
    """The auto-accept threshold for one label (or all labels when ``label`` is None), or why there is none."""

    label: str | None
    threshold: float | None
    precision: float | None
    lower_bound: float | None
    coverage: float
    accepted: int
    support: int
    reason: str


@dataclass(frozen=True)
class TrustReport:
    """How well the LLM's labels match the humans', overall and per predicted label, with thresholds and curves."""

    n: int
    agreement: float | None
    kappa: float | None
    overall: Threshold
    per_label: dict[str, Threshold]
    curve: tuple[CurvePoint, ...]
    per_label_curve: dict[str, tuple[CurvePoint, ...]]
    target: float
    confidence_level: float


def _percent(value: float) -> str:
    """Format a rate as a percentage with at most one decimal, for the reason sentences."""
    return f"{value * 100:.1f}".rstrip("0").rstrip(".") + "%"


def _check_confidence_level(confidence_level: float) -> None:
    if not 0.5 <= confidence_level < 1:
        raise ValueError(CONFIDENCE_LEVEL_RANGE.format(confidence_level=confidence_level))


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(UNKNOWN_METHOD.format(method=method))


def _check_target(target: float) -> None:
    if not 0 < target < 1:
        raise ValueError(TARGET_RANGE.format(target=target))


def _check_min_accepted(min_accepted: int) -> None:
    if isinstance(min_accepted, bool) or not isinstance(min_accepted, int | np.integer) or min_accepted < 1:
        raise ValueError(MIN_ACCEPTED_RANGE.format(min_accepted=min_accepted))


def _confidences(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return confidences as a float array; refuse NaN, infinities and values outside [0, 1]."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(CONFIDENCE_INVALID) from error
    if array.ndim != 1 or not np.all(np.isfinite(array)) or np.any((array < 0) | (array > 1)):
        raise ValueError(CONFIDENCE_INVALID)
    return array


def _lower_bounds(successes: np.ndarray, trials: np.ndarray, confidence_level: float, method: str) -> np.ndarray:
    """Return one-sided lower bounds of ``successes / trials``; every entry of ``trials`` must be positive."""
    successes = successes.astype(np.float64)
    trials = trials.astype(np.float64)
    rate = successes / trials
    if method == "wilson":
        z = norm.ppf(confidence_level)
        z2_n = z * z / trials
        spread = z * np.sqrt(rate * (1 - rate) / trials + z2_n / (4 * trials))
        bound = (rate + z2_n / 2 - spread) / (1 + z2_n)
    else:
        hits = successes > 0
        bound = np.zeros_like(rate)
        bound[hits] = beta.ppf(1 - confidence_level, successes[hits], trials[hits] - successes[hits] + 1)
    # Both bounds lie in [0, rate] exactly; the clip only removes floating-point noise at k == 0.
    return np.clip(bound, 0.0, rate)


def lower_bound(successes: int, trials: int, *, confidence_level: float = 0.95, method: str = "wilson") -> float | None:
    """Return the one-sided lower confidence bound of a success rate, or None when there are no trials.

    ``method`` is ``"wilson"`` (Wilson score with ``z = Φ⁻¹(confidence_level)``) or ``"clopper_pearson"`` (exact:
    the ``1 - confidence_level`` quantile of Beta(k, n - k + 1), and 0 when k == 0).
    """
    _check_confidence_level(confidence_level)
    _check_method(method)
    integral = all(isinstance(value, int | np.integer) and not isinstance(value, bool) for value in (successes, trials))
    if not integral or not 0 <= successes <= trials:
        raise ValueError(COUNTS_INVALID.format(successes=successes, trials=trials))
    if trials == 0:
        return None
    return float(_lower_bounds(np.array([successes]), np.array([trials]), confidence_level, method)[0])


def _default_thresholds(descending: np.ndarray) -> np.ndarray:
    """Use the distinct confidences, or ~MAX_CURVE_POINTS of them at evenly spaced ranks when there are more."""
    distinct = np.unique(descending)[::-1]
    if len(distinct) <= MAX_CURVE_POINTS:
        return distinct
    ranks = np.ceil(np.linspace(1, len(descending), MAX_CURVE_POINTS)).astype(np.int64) - 1
    return np.unique(descending[ranks])[::-1]


def precision_coverage_curve(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    *,
    thresholds: Sequence[float] | None = None,
    confidence_level: float = 0.95,
    method: str = "wilson",
) -> tuple[CurvePoint, ...]:
    """Return precision, coverage and precision's lower bound when accepting confidence >= t, for t descending.

    Without ``thresholds`` the curve steps through the distinct confidences (the last point accepts everything),
    thinned to about MAX_CURVE_POINTS at evenly spaced coverage when there are more.
    """
    _check_confidence_level(confidence_level)
    _check_method(method)
    scores = _confidences(confidence)
    hits = np.asarray(correct, dtype=bool)
    if hits.shape != scores.shape:
        raise ValueError(CURVE_LENGTH_MISMATCH.format(confidence=len(scores), correct=len(hits)))
    order = np.argsort(-scores, kind="stable")
    descending = scores[order]
    if thresholds is None:
        cuts = _default_thresholds(descending)
    else:
        try:
            cuts = np.asarray(thresholds, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(THRESHOLDS_INVALID) from error
        if cuts.ndim != 1 or not np.all(np.isfinite(cuts)):
            raise ValueError(THRESHOLDS_INVALID)
        cuts = np.unique(cuts)[::-1]

    total = len(scores)
    accepted = np.searchsorted(-descending, -cuts, side="right")
    correct_so_far = np.concatenate(([0], np.cumsum(hits[order], dtype=np.int64)))[accepted]
    bounds = np.full(len(cuts), np.nan)
    some = accepted > 0
    bounds[some] = _lower_bounds(correct_so_far[some], accepted[some], confidence_level, method)
    return tuple(
        CurvePoint(
            threshold=float(cut),
            accepted=int(count),
            coverage=count / total if total else 0.0,
            correct=int(right),
            precision=right / count if count else None,
            lower_bound=float(bound) if count else None,
        )
        for cut, count, right, bound in zip(
            cuts.tolist(), accepted.tolist(), correct_so_far.tolist(), bounds.tolist(), strict=True
        )
    )


def choose_threshold(points: Sequence[CurvePoint], *, target: float, min_accepted: int = 30) -> CurvePoint | None:
    """Return the lowest-threshold point whose lower bound is >= target over >= min_accepted items, or None.

    The bound holds for the whole accepted set at that threshold (all items with confidence >= it). Precision is
    not monotone in the threshold, so higher thresholds are not guaranteed to do as well, nor the items near it.
    """
    _check_target(target)
    _check_min_accepted(min_accepted)
    qualifying = [
        point
        for point in points
        if point.accepted >= min_accepted and point.lower_bound is not None and point.lower_bound >= target
    ]
    return min(qualifying, key=lambda point: point.threshold, default=None)


def _threshold(
    label: str | None,
    curve: tuple[CurvePoint, ...],
    support: int,
    *,
    target: float,
    confidence_level: float,
    min_accepted: int,
) -> Threshold:
    """Pick the threshold for one group of items and explain the choice, or the lack of one, in a sentence."""
    scope = SCOPE_ALL if label is None else SCOPE_LABEL.format(label=label)
    level = _percent(confidence_level)
    eligible = [point for point in curve if point.accepted >= min_accepted]
    if not eligible:
        template = REASON_NONE if support == 0 else REASON_TOO_FEW
        reason = template.format(support=support, scope=scope, min_accepted=min_accepted)
        return Threshold(label, None, None, None, 0.0, 0, support, reason)

    chosen = choose_threshold(curve, target=target, min_accepted=min_accepted)
    if chosen is None:
        reaching = [point for point in eligible if point.precision is not None and point.precision >= target]
        template = REASON_TOO_UNCERTAIN if reaching else REASON_NEVER_REACHES
        best = max(reaching or eligible, key=lambda point: (point.lower_bound, point.accepted))
        reason = template.format(
            target=_percent(target),
            level=level,
            lower_bound=_percent(best.lower_bound),
            precision=_percent(best.precision),
            threshold=best.threshold,
            accepted=best.accepted,
        )
        return Threshold(label, None, None, None, 0.0, 0, support, reason)

    reason = REASON_CHOSEN.format(
        threshold=chosen.threshold,
        accepted=chosen.accepted,
        support=support,
        coverage=_percent(chosen.coverage),
        precision=_percent(chosen.precision),
        level=level,
        lower_bound=_percent(chosen.lower_bound),
        target=_percent(target),
    )
    return Threshold(
        label=label,
        threshold=chosen.threshold,
        precision=chosen.precision,
        lower_bound=chosen.lower_bound,
        coverage=chosen.coverage,
        accepted=chosen.accepted,
        support=support,
        reason=reason,
    )


def trust_report(
    llm_labels: Sequence[str],
    confidence: Sequence[float],
    human_labels: Sequence[str],
    *,
    target: float = 0.95,
    confidence_level: float = 0.95,
    min_accepted: int = 30,
    method: str = "wilson",
) -> TrustReport:
    """Measure the LLM against the humans on items both labeled, and pick auto-accept thresholds overall and per label.

    Pass only items that have both labels. Per-label entries exist for every label the LLM predicted.
    """
    _check_target(target)
    _check_confidence_level(confidence_level)
    _check_min_accepted(min_accepted)
    _check_method(method)
    llm, human = list(llm_labels), list(human_labels)
    if not len(llm) == len(confidence) == len(human):
        raise ValueError(LENGTH_MISMATCH.format(llm=len(llm), confidence=len(confidence), human=len(human)))
    scores = _confidences(confidence)
    n = len(llm)
    correct = np.fromiter((said == truth for said, truth in zip(llm, human, strict=True)), dtype=bool, count=n)
    options = {"target": target, "confidence_level": confidence_level, "min_accepted": min_accepted}

    curve = precision_coverage_curve(scores, correct, confidence_level=confidence_level, method=method)
    rows_by_label: dict[str, list[int]] = {}
    for row, label in enumerate(llm):
        rows_by_label.setdefault(label, []).append(row)
    per_label: dict[str, Threshold] = {}
    per_label_curve: dict[str, tuple[CurvePoint, ...]] = {}
    for label in sorted(rows_by_label):
        rows = np.asarray(rows_by_label[label], dtype=np.int64)
        per_label_curve[label] = precision_coverage_curve(
            scores[rows], correct[rows], confidence_level=confidence_level, method=method
        )
        per_label[label] = _threshold(label, per_label_curve[label], len(rows), **options)

    return TrustReport(
        n=n,
        agreement=float(correct.mean()) if n else None,
        kappa=cohen_kappa(llm, human),
        overall=_threshold(None, curve, n, **options),
        per_label=per_label,
        curve=curve,
        per_label_curve=per_label_curve,
        target=target,
        confidence_level=confidence_level,
    )


def auto_accept_preview(
    report: TrustReport,
    pending_labels: Sequence[str],
    pending_confidence: Sequence[float],
    *,
    per_label: bool = False,
) -> dict[str, Any]:
    """Say what switching auto-accept on would do to the pending LLM labels now, as JSON values for the page.

    Uses the overall threshold, or with ``per_label`` each predicted label's own (labels the report has not seen
    are never accepted). The expected precision and its lower bound are the evaluated ones at the thresholds used,
    mixed by how many pending items each label would accept; they assume the pending items resemble the evaluated.
    """
    labels = list(pending_labels)
    if len(labels) != len(pending_confidence):
        raise ValueError(PENDING_LENGTH_MISMATCH.format(labels=len(labels), confidence=len(pending_confidence)))
    scores = _confidences(pending_confidence)
    rows_by_label: dict[str, list[int]] = {}
    for row, label in enumerate(labels):
        rows_by_label.setdefault(label, []).append(row)

    by_label: dict[str, dict[str, Any]] = {}
    accepted_total, expected_correct, bounded_correct = 0, 0.0, 0.0
    for label in sorted(rows_by_label):
        rule = report.per_label.get(label) if per_label else report.overall
        cut = rule.threshold if rule is not None else None
        accepted = 0 if cut is None else int(np.count_nonzero(scores[rows_by_label[label]] >= cut))
        if accepted:
            accepted_total += accepted
            expected_correct += accepted * rule.precision
            bounded_correct += accepted * rule.lower_bound
        by_label[label] = {
            "pending": len(rows_by_label[label]),
            "accepted": accepted,
            "threshold": cut,
            "precision": rule.precision if rule is not None else None,
            "lower_bound": rule.lower_bound if rule is not None else None,
            "reason": rule.reason if rule is not None else REASON_UNSEEN.format(label=label),
        }

    return {
        "mode": "per_label" if per_label else "overall",
        "threshold": None if per_label else report.overall.threshold,
        "reason": None if per_label else report.overall.reason,
        "pending": len(labels),
        "accepted": accepted_total,
        "coverage": accepted_total / len(labels) if labels else None,
        "expected_precision": expected_correct / accepted_total if accepted_total else None,
        "lower_bound": bounded_correct / accepted_total if accepted_total else None,
        "expected_errors": accepted_total - expected_correct if accepted_total else 0.0,
        "by_label": by_label,
        "target": report.target,
        "confidence_level": report.confidence_level,
    }
