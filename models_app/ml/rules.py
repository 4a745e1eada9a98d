"""Business rules run after the text classifier: force, forbid, abstain or tag, by text, metadata and confidence.

``compile_rules`` validates a stored rule set strictly and compiles its patterns once; ``apply_rules`` runs it at
serving time; ``apply_rules_arrays`` is the same walk vectorised over a holdout; ``rules_effect`` scores it.

* The label starts as the model's argmax (ties go to the first of ``labels``). Rules run in order; a rule fires when
  enabled and all its conditions (none always hold) hold against the state the earlier rules left.
  ``confidence_below`` reads the model's own top probability, ``predicted_in`` the current label.
* ``force`` sets its label and locks it: later force and forbid rules are skipped and do not fire.
* ``forbid`` adds its label to the row's forbidden set; when the current label is that label it fires and moves to
  the most probable label not forbidden so far, or abstains (keeping the label) when every label is forbidden.
* ``abstain`` marks the row abstained, keeping the label as the best guess; ``tag`` adds its tag once. Both fire
  whenever their conditions hold. A rule label the model has no column for can be forced, never predicted.

Text conditions use RE2 (linear time, no backreferences or lookaround) on the text in Unicode NFC:

* ``keywords`` match case-insensitively (Unicode simple case folding) as whole words or phrases that touch no
  letter, digit, combining mark or underscore; whitespace in a phrase matches any run of whitespace. RE2's ``\b``
  knows only ASCII (``\bcafé\b`` misses "café au lait" yet matches "cafés"), so the edges are the consumed
  groups WORD_EDGE_BEFORE / WORD_EDGE_AFTER, harmless since only presence matters: "refund" misses "refunds",
  "café" matches "Café!" but not "cafés", "c++" matches "I use c++ daily".
* ``regex`` patterns are searched as written, at most MAX_PATTERN_LENGTH characters and MAX_PATTERN_MEMORY bytes.
* ``meta_equals`` / ``meta_in`` compare ``str(meta[field])`` with ``str(value)``; a missing or null field never
  matches. Nothing here imports Django.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from models_app.ml.metrics import classification_report
from models_app.ml.rules_compile import (  # noqa: F401 - re-exported: the engine's public names live here
    _LABEL_ACTIONS,
    ACTIONS,
    ERROR_CONDITIONS,
    ERROR_DUPLICATE_NAME,
    ERROR_EMPTY,
    ERROR_ENABLED,
    ERROR_FIELD,
    ERROR_IN_CONDITION,
    ERROR_IN_RULE,
    ERROR_KEYWORDS_TOO_LARGE,
    ERROR_LABEL_REQUIRED,
    ERROR_LABELS,
    ERROR_METAS_LENGTH,
    ERROR_MISSING_FIELDS,
    ERROR_MODE,
    ERROR_NAME,
    ERROR_NOT_A_LIST,
    ERROR_NOT_AN_OBJECT,
    ERROR_PATTERN,
    ERROR_PATTERN_LENGTH,
    ERROR_PREDICTED_LABELS,
    ERROR_PROBA,
    ERROR_TAG,
    ERROR_THRESHOLD,
    ERROR_TOO_MANY_RULES,
    ERROR_UNKNOWN_ACTION,
    ERROR_UNKNOWN_FIELDS,
    ERROR_UNKNOWN_KIND,
    ERROR_UNKNOWN_LABEL,
    ERROR_UNUSED_FIELD,
    ERROR_VALUE,
    ERROR_VALUES,
    ERROR_WORDS,
    ERROR_Y_TRUE_LENGTH,
    KINDS,
    MAX_CONDITIONS,
    MAX_ITEMS,
    MAX_PATTERN_LENGTH,
    MAX_PATTERN_MEMORY,
    MAX_RULES,
    MAX_TEXT_LENGTH,
    WORD_EDGE_AFTER,
    WORD_EDGE_BEFORE,
    CompiledRules,
    Metas,
    RuledPrediction,
    RuleError,
    RulesEffect,
    _Condition,
    compile_rules,
)


def _prepare(
    compiled: CompiledRules, texts: Sequence[str], metas: Metas, proba: np.ndarray, labels: Sequence[str]
) -> tuple[list[str], np.ndarray, list[str]]:
    """Check the inputs; return NFC texts, proba padded with -inf for rule labels the model lacks, and the columns."""
    columns = list(labels)
    if not columns or len(set(columns)) != len(columns):
        raise RuleError(ERROR_LABELS)
    matrix = np.asarray(proba, dtype=np.float64)
    if matrix.shape != (len(texts), len(columns)) or not np.all(np.isfinite(matrix)):
        raise RuleError(ERROR_PROBA.format(expected=(len(texts), len(columns)), got=matrix.shape))
    if metas is not None and len(metas) != len(texts):
        raise RuleError(ERROR_METAS_LENGTH.format(metas=len(metas), texts=len(texts)))
    for rule in compiled.rules:
        if rule.label is not None and rule.label not in columns:
            columns.append(rule.label)
    padded = np.full((len(texts), len(columns)), -np.inf)
    padded[:, : len(labels)] = matrix
    return [unicodedata.normalize("NFC", text) for text in texts], padded, columns


def _text_holds(condition: _Condition, text: str, meta: Mapping[str, Any] | None) -> bool:
    """Evaluate a condition that depends only on the row, never on the rules' state."""
    if condition.kind in ("keywords", "regex"):
        return all(pattern.search(text) is not None for pattern in condition.patterns)
    value = meta.get(condition.field) if meta is not None else None
    return value is not None and str(value) in condition.values


def _holds(condition: _Condition, text: str, meta: Mapping[str, Any] | None, confidence: float, label: str) -> bool:
    if condition.kind == "confidence_below":
        return confidence < condition.threshold
    if condition.kind == "predicted_in":
        return label in condition.values
    return _text_holds(condition, text, meta)


def _walk(
    compiled: CompiledRules, text: str, meta: Mapping[str, Any] | None, row: np.ndarray, columns: list[str], known: int
) -> tuple[int, bool, tuple[str, ...], tuple[str, ...]]:
    """Run the rules on one row; return the final column, abstained, and the rules fired and tags, in order."""
    current = int(np.argmax(row))
    confidence = float(row[current])
    forbidden = np.arange(len(columns)) >= known
    locked = abstained = False
    fired: list[str] = []
    tags: list[str] = []
    for rule in compiled.rules:
        if not rule.enabled or (locked and rule.action in _LABEL_ACTIONS):
            continue
        if not all(_holds(c, text, meta, confidence, columns[current]) for c in rule.conditions):
            continue
        if rule.action == "force":
            current, locked = columns.index(rule.label), True
        elif rule.action == "forbid":
            target = columns.index(rule.label)
            forbidden[target] = True
            if current != target:
                continue
            if forbidden.all():
                abstained = True
            else:
                current = int(np.argmax(np.where(forbidden, -np.inf, row)))
        elif rule.action == "abstain":
            abstained = True
        elif rule.tag not in tags:
            tags.append(rule.tag)
        fired.append(rule.name)
    return current, abstained, tuple(fired), tuple(tags)


def apply_rules(
    compiled: CompiledRules, texts: Sequence[str], metas: Metas, proba: np.ndarray, labels: Sequence[str]
) -> list[RuledPrediction]:
    """Run the rules on model output, one prediction per text; ``proba`` columns follow ``labels``."""
    normalized, padded, columns = _prepare(compiled, texts, metas, proba, labels)
    predictions = []
    for row, text in enumerate(normalized):
        meta = metas[row] if metas is not None else None
        current, abstained, fired, tags = _walk(compiled, text, meta, padded[row], columns, len(labels))
        model = int(np.argmax(padded[row]))
        probabilities = {label: float(padded[row, i]) for i, label in enumerate(labels)}
        confidence = probabilities[columns[model]]
        predictions.append(
            RuledPrediction(columns[current], probabilities, confidence, columns[model], abstained, fired, tags)
        )
    return predictions


def apply_rules_arrays(
    compiled: CompiledRules, texts: Sequence[str], metas: Metas, proba: np.ndarray, labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Run the rules on a whole holdout at once, as apply_rules would; return labels, abstained flags, firings."""
    normalized, padded, columns = _prepare(compiled, texts, metas, proba, labels)
    size = len(normalized)
    position = {label: i for i, label in enumerate(columns)}
    current = padded.argmax(axis=1)
    confidence = padded[np.arange(size), current]
    forbidden = np.zeros(padded.shape, dtype=bool)
    forbidden[:, len(labels) :] = True
    locked = np.zeros(size, dtype=bool)
    abstained = np.zeros(size, dtype=bool)
    fired: dict[str, int] = {}
    for rule in compiled.rules:
        fired[rule.name] = 0
        if not rule.enabled:
            continue
        holds = ~locked if rule.action in _LABEL_ACTIONS else np.ones(size, dtype=bool)
        for condition in rule.conditions:
            rows = np.flatnonzero(holds)
            if condition.kind == "confidence_below":
                holds[rows] = confidence[rows] < condition.threshold
            elif condition.kind == "predicted_in":
                holds[rows] = np.isin(
                    current[rows], [position[label] for label in condition.values if label in position]
                )
            else:
                metas_of = (metas[row] if metas is not None else None for row in rows)
                matches = (
                    _text_holds(condition, normalized[row], meta) for row, meta in zip(rows, metas_of, strict=True)
                )
                holds[rows] = np.fromiter(matches, dtype=bool, count=len(rows))
        if rule.action == "force":
            current[holds] = position[rule.label]
            locked |= holds
        elif rule.action == "forbid":
            target = position[rule.label]
            forbidden[holds, target] = True
            holds &= current == target
            rows = np.flatnonzero(holds)
            stuck = forbidden[rows].all(axis=1)
            abstained[rows[stuck]] = True
            moving = rows[~stuck]
            current[moving] = np.where(forbidden[moving], -np.inf, padded[moving]).argmax(axis=1)
        elif rule.action == "abstain":
            abstained |= holds
        fired[rule.name] = int(holds.sum())
    return np.asarray(columns)[current], abstained, fired


def _metrics(truth: list[str], predicted: list[str], classes: list[str], recall_for: list[str]) -> dict[str, Any]:
    """Score one set of rows: accuracy, macro-F1 over labels in truth or prediction, recall per true label."""
    if not truth:
        return {"answered": 0, "accuracy": None, "macro_f1": None, "per_class_recall": dict.fromkeys(recall_for)}
    report = classification_report(truth, predicted, None, classes, train_majority=classes[0])
    recall = {
        label: report.per_class[label]["recall"] if report.per_class[label]["support"] else None for label in recall_for
    }
    return {
        "answered": len(truth),
        "accuracy": report.accuracy,
        "macro_f1": report.macro_f1,
        "per_class_recall": recall,
    }


def rules_effect(
    compiled: CompiledRules,
    texts: Sequence[str],
    metas: Metas,
    proba: np.ndarray,
    labels: Sequence[str],
    y_true: Sequence[str],
) -> RulesEffect:
    """Compare holdout metrics without the rules (every row) and with them (the rows they leave answered)."""
    truth = list(y_true)
    if len(truth) != len(texts):
        raise RuleError(ERROR_Y_TRUE_LENGTH.format(y_true=len(truth), texts=len(texts)))
    if not truth:
        raise RuleError(ERROR_EMPTY)
    predicted, abstained, fired = apply_rules_arrays(compiled, texts, metas, proba, labels)
    model = np.asarray(labels)[np.asarray(proba, dtype=np.float64).argmax(axis=1)]
    classes = list(dict.fromkeys([*labels, *predicted.tolist(), *sorted(set(truth))]))
    recall_for = [label for label in classes if label in set(truth)]
    answered = np.flatnonzero(~abstained)
    return RulesEffect(
        size=len(truth),
        changed=int(np.count_nonzero(predicted != model)),
        abstained=int(abstained.sum()),
        coverage=len(answered) / len(truth),
        fired=fired,
        without=_metrics(truth, model.tolist(), classes, recall_for),
        with_rules=_metrics([truth[row] for row in answered], predicted[answered].tolist(), classes, recall_for),
    )


__all__ = [
    "ACTIONS",
    "apply_rules",
    "apply_rules_arrays",
    "compile_rules",
    "CompiledRules",
    "ERROR_CONDITIONS",
    "ERROR_DUPLICATE_NAME",
    "ERROR_EMPTY",
    "ERROR_ENABLED",
    "ERROR_FIELD",
    "ERROR_IN_CONDITION",
    "ERROR_IN_RULE",
    "ERROR_KEYWORDS_TOO_LARGE",
    "ERROR_LABEL_REQUIRED",
    "ERROR_LABELS",
    "ERROR_METAS_LENGTH",
    "ERROR_MISSING_FIELDS",
    "ERROR_MODE",
    "ERROR_NAME",
    "ERROR_NOT_A_LIST",
    "ERROR_NOT_AN_OBJECT",
    "ERROR_PATTERN",
    "ERROR_PATTERN_LENGTH",
    "ERROR_PREDICTED_LABELS",
    "ERROR_PROBA",
    "ERROR_TAG",
    "ERROR_THRESHOLD",
    "ERROR_TOO_MANY_RULES",
    "ERROR_UNKNOWN_ACTION",
    "ERROR_UNKNOWN_FIELDS",
    "ERROR_UNKNOWN_KIND",
    "ERROR_UNKNOWN_LABEL",
    "ERROR_UNUSED_FIELD",
    "ERROR_VALUE",
    "ERROR_VALUES",
    "ERROR_WORDS",
    "ERROR_Y_TRUE_LENGTH",
    "KINDS",
    "MAX_CONDITIONS",
    "MAX_ITEMS",
    "MAX_PATTERN_LENGTH",
    "MAX_PATTERN_MEMORY",
    "MAX_RULES",
    "MAX_TEXT_LENGTH",
    "Metas",
    "RuledPrediction",
    "RuleError",
    "rules_effect",
    "RulesEffect",
    "WORD_EDGE_AFTER",
    "WORD_EDGE_BEFORE",
]
