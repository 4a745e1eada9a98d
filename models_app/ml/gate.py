"""The evaluate-before-deploy gate: may a candidate model replace the published one?

Both models are scored on the same rows: the candidate's time-split holdout minus every example either model
trained on (the caller removes them). The candidate passes only when every check holds:

* ``holdout_size``: the shared holdout has at least ``min_holdout`` rows, so the comparison means something;
* ``macro_f1``: its macro-F1 is not below the published model's by more than ``tolerance``; a first version
  (nothing published) must instead beat the majority-class baseline's macro-F1 strictly;
* ``class_recall``: no class's recall drops by more than ``recall_drop`` against the published model (classes with
  support on the holdout only);
* ``rules``: with the rules that would serve on top of it, macro-F1 on the rows the rules still answer is not below
  the model's own macro-F1 on every row by more than ``tolerance``. Abstaining sends a row to people, so it is not
  counted as an error; coverage is reported next to it.

Pure: arrays in, a frozen result out; no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models_app.ml.metrics import classification_report

CHECK_HOLDOUT = "holdout_size"
CHECK_MACRO_F1 = "macro_f1"
CHECK_RECALL = "class_recall"
CHECK_RULES = "rules"

REASON_HOLDOUT_OK = "The shared holdout has {size:,} examples (at least {minimum:,} needed)."
REASON_HOLDOUT_SMALL = "The shared holdout has only {size:,} examples; the gate needs at least {minimum:,}."
REASON_BASELINE_OK = "Macro-F1 {candidate:.3f} beats the majority-class baseline ({baseline:.3f}, always “{label}”)."
REASON_BASELINE_FAIL = (
    "Macro-F1 {candidate:.3f} does not beat the majority-class baseline ({baseline:.3f}, always “{label}”)."
)
REASON_F1_OK = "Macro-F1 {candidate:.3f} against the published v{number}'s {published:.3f} (tolerance {tolerance:.3f})."
REASON_F1_FAIL = (
    "Macro-F1 {candidate:.3f} is below the published v{number}'s {published:.3f} by more than the tolerance "
    "({tolerance:.3f})."
)
REASON_RECALL_OK = "No class's recall drops by more than {delta:.2f} against v{number}."
REASON_RECALL_FAIL = "Recall drops by more than {delta:.2f} against v{number} for: {drops}."
REASON_RULES_NONE = "No rules serve on top of it."
REASON_RULES_OK = (
    "With the rules, macro-F1 {with_rules:.3f} on the {answered:,} rows they answer ({coverage:.0%}), "
    "against {without:.3f} without."
)
REASON_RULES_FAIL = (
    "The rules make it worse: macro-F1 {with_rules:.3f} on the {answered:,} rows they answer, against {without:.3f} "
    "without (tolerance {tolerance:.3f})."
)
REASON_RULES_ALL_ABSTAIN = "The rules abstain on every holdout row, so nothing would be answered."
ERROR_LENGTHS = "y_true, the candidate's and the published model's predictions need one entry per row."


@dataclass(frozen=True)
class GateSettings:
    """The gate's thresholds; the project's serving settings hold them."""

    tolerance: float = 0.0
    recall_drop: float = 0.05
    min_holdout: int = 30


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: tuple[Check, ...]
    comparison: dict[str, Any]

    @property
    def reasons(self) -> list[str]:
        """One sentence per check, the failed ones first."""
        ordered = sorted(self.checks, key=lambda check: check.passed)
        return [check.detail for check in ordered]

    def checks_as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(check) for check in self.checks]


@dataclass(frozen=True)
class Scored:
    """One model's predictions on the shared holdout; with rules, ``answered`` marks the rows not abstained on."""

    y_pred: Sequence[str]
    proba: np.ndarray
    answered: np.ndarray | None = None


def _summary(y_true: Sequence[str], scored: Scored, labels: Sequence[str], majority: str) -> dict[str, Any]:
    """Return accuracy, macro-F1, per-class recall and the majority baseline of predictions on rows."""
    rows = np.arange(len(y_true)) if scored.answered is None else np.flatnonzero(scored.answered)
    if rows.size == 0:
        return {"size": 0, "accuracy": 0.0, "macro_f1": 0.0, "recall": {}, "baseline": {}}
    truth = [y_true[index] for index in rows]
    predicted = [scored.y_pred[index] for index in rows]
    report = classification_report(truth, predicted, scored.proba[rows], labels, train_majority=majority)
    return {
        "size": int(rows.size),
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "recall": {name: values["recall"] for name, values in report.per_class.items() if values["support"]},
        "support": {name: values["support"] for name, values in report.per_class.items()},
        "baseline": report.majority_baseline,
    }


def gate_decide(
    *,
    y_true: Sequence[str],
    labels: Sequence[str],
    majority: str,
    candidate: Scored,
    published: Scored | None,
    published_number: int | None = None,
    candidate_with_rules: Scored | None = None,
    settings: GateSettings | None = None,
) -> GateResult:
    """Run every check of the gate on one shared holdout and return the verdict with its numbers."""
    settings = settings or GateSettings()
    size = len(y_true)
    if len(candidate.y_pred) != size or (published is not None and len(published.y_pred) != size):
        raise ValueError(ERROR_LENGTHS)
    checks: list[Check] = []
    comparison: dict[str, Any] = {"size": size, "labels": list(labels), "settings": asdict(settings)}
    enough = size >= settings.min_holdout
    detail = (REASON_HOLDOUT_OK if enough else REASON_HOLDOUT_SMALL).format(size=size, minimum=settings.min_holdout)
    checks.append(Check(CHECK_HOLDOUT, enough, detail, {"size": size, "minimum": settings.min_holdout}))
    if size == 0:
        return GateResult(False, tuple(checks), comparison)

    mine = _summary(y_true, candidate, labels, majority)
    comparison["candidate"] = mine
    if published is None:
        baseline = mine["baseline"]
        beats = mine["macro_f1"] > baseline["macro_f1"]
        template = REASON_BASELINE_OK if beats else REASON_BASELINE_FAIL
        detail = template.format(candidate=mine["macro_f1"], baseline=baseline["macro_f1"], label=baseline["label"])
        checks.append(Check(CHECK_MACRO_F1, beats, detail, {"candidate": mine["macro_f1"], "baseline": baseline}))
    else:
        theirs = _summary(y_true, published, labels, majority)
        comparison["published"] = theirs
        comparison["published_number"] = published_number
        holds = mine["macro_f1"] >= theirs["macro_f1"] - settings.tolerance - 1e-12
        template = REASON_F1_OK if holds else REASON_F1_FAIL
        detail = template.format(
            candidate=mine["macro_f1"],
            published=theirs["macro_f1"],
            number=published_number,
            tolerance=settings.tolerance,
        )
        values = {"candidate": mine["macro_f1"], "published": theirs["macro_f1"], "tolerance": settings.tolerance}
        checks.append(Check(CHECK_MACRO_F1, holds, detail, values))
        drops = {
            name: round(theirs["recall"][name] - mine["recall"].get(name, 0.0), 4)
            for name in theirs["recall"]
            if theirs["recall"][name] - mine["recall"].get(name, 0.0) > settings.recall_drop + 1e-12
        }
        listed = ", ".join(
            f"{name} ({theirs['recall'][name]:.2f} → {mine['recall'].get(name, 0.0):.2f})" for name in sorted(drops)
        )
        template = REASON_RECALL_OK if not drops else REASON_RECALL_FAIL
        detail = template.format(delta=settings.recall_drop, number=published_number, drops=listed)
        checks.append(Check(CHECK_RECALL, not drops, detail, {"drops": drops, "delta": settings.recall_drop}))

    if candidate_with_rules is None:
        checks.append(Check(CHECK_RULES, True, REASON_RULES_NONE))
    else:
        ruled = _summary(y_true, candidate_with_rules, labels, majority)
        comparison["candidate_with_rules"] = ruled
        if ruled["size"] == 0:
            checks.append(Check(CHECK_RULES, False, REASON_RULES_ALL_ABSTAIN, {"answered": 0}))
        else:
            holds = ruled["macro_f1"] >= mine["macro_f1"] - settings.tolerance - 1e-12
            template = REASON_RULES_OK if holds else REASON_RULES_FAIL
            detail = template.format(
                with_rules=ruled["macro_f1"],
                without=mine["macro_f1"],
                answered=ruled["size"],
                coverage=ruled["size"] / size,
                tolerance=settings.tolerance,
            )
            values = {"with_rules": ruled["macro_f1"], "without": mine["macro_f1"], "answered": ruled["size"]}
            checks.append(Check(CHECK_RULES, holds, detail, values))
    return GateResult(all(check.passed for check in checks), tuple(checks), comparison)
