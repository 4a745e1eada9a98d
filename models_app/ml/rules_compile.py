"""Validate and compile a stored rule set for `models_app.ml.rules`: every field checked, every pattern compiled once."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import re2

ACTIONS = ("force", "forbid", "abstain", "tag")
KINDS = ("keywords", "regex", "meta_equals", "meta_in", "confidence_below", "predicted_in")
MAX_RULES = 200
MAX_TEXT_LENGTH = 100
MAX_CONDITIONS = 10
MAX_ITEMS = 200
MAX_PATTERN_LENGTH = 500
MAX_PATTERN_MEMORY = 4 << 20
WORD_EDGE_BEFORE = r"(?:^|[^\pL\pN\pM_])"
WORD_EDGE_AFTER = r"(?:$|[^\pL\pN\pM_])"

ERROR_NOT_A_LIST = "Rules must be a list of objects."
ERROR_TOO_MANY_RULES = "At most {limit} rules are allowed, got {count}."
ERROR_IN_RULE = "Rule {position} ({name}): {problem}"
ERROR_IN_CONDITION = "condition {position}: {problem}"
ERROR_NOT_AN_OBJECT = "must be an object."
ERROR_MISSING_FIELDS = "missing {fields}."
ERROR_UNKNOWN_FIELDS = "unknown fields {fields}."
ERROR_NAME = "name must be a non-empty string of at most {limit} characters."
ERROR_DUPLICATE_NAME = "the name is already used by rule {other}."
ERROR_ENABLED = "enabled must be true or false."
ERROR_UNKNOWN_ACTION = "unknown action {action!r}: choose from " + ", ".join(ACTIONS) + "."
ERROR_LABEL_REQUIRED = "{action} needs a label."
ERROR_UNKNOWN_LABEL = "label {label!r} is not one of the labels: {labels}."
ERROR_UNUSED_FIELD = "{action} takes no {field}."
ERROR_TAG = "tag needs a tag: a non-empty string of at most {limit} characters."
ERROR_CONDITIONS = "conditions must be a list of at most {limit} conditions."
ERROR_UNKNOWN_KIND = "unknown kind {kind!r}: choose from " + ", ".join(KINDS) + "."
ERROR_WORDS = "words must be a list of 1 to {limit} non-empty strings of at most {length} characters."
ERROR_MODE = "mode must be 'any' or 'all', got {mode!r}."
ERROR_KEYWORDS_TOO_LARGE = "the keywords are too many or too long for RE2 ({reason})."
ERROR_PATTERN_LENGTH = "pattern must be a non-empty string of at most {limit} characters."
ERROR_PATTERN = "pattern {pattern!r} is not valid RE2 ({reason}); RE2 has no backreferences or lookaround."
ERROR_FIELD = "field must be a non-empty string."
ERROR_VALUE = "value must be a string, a number or a boolean."
ERROR_VALUES = "values must be a list of 1 to {limit} strings, numbers or booleans."
ERROR_THRESHOLD = "threshold must be a number in (0, 1], got {threshold!r}."
ERROR_PREDICTED_LABELS = "labels must be a list of 1 to {limit} labels."
ERROR_LABELS = "labels must be a non-empty list without repeats."
ERROR_PROBA = (
    "proba must be finite numbers with one row per text and one column per label: expected {expected}, got {got}."
)
ERROR_METAS_LENGTH = "metas must have one entry per text: got {metas} for {texts} texts."
ERROR_Y_TRUE_LENGTH = "y_true must have one label per text: got {y_true} for {texts} texts."
ERROR_EMPTY = "Cannot measure the rules' effect on an empty holdout."

Metas = Sequence[Mapping[str, Any]] | None
_LABEL_ACTIONS = ("force", "forbid")
_CONDITION_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    "keywords": ({"words"}, {"mode"}),
    "regex": ({"pattern"}, set()),
    "meta_equals": ({"field", "value"}, set()),
    "meta_in": ({"field", "values"}, set()),
    "confidence_below": ({"threshold"}, set()),
    "predicted_in": ({"labels"}, set()),
}


class RuleError(ValueError):
    """A rule set that does not validate, or inputs the rules cannot run on."""


class _Invalid(Exception):
    """Carry one problem up to compile_rules, which names the rule."""


@dataclass(frozen=True)
class _Condition:
    kind: str
    patterns: tuple[Any, ...] = ()
    field: str = ""
    values: frozenset[str] = frozenset()
    threshold: float = 0.0


@dataclass(frozen=True)
class _Rule:
    name: str
    enabled: bool
    action: str
    label: str | None
    tag: str | None
    conditions: tuple[_Condition, ...]


@dataclass(frozen=True)
class CompiledRules:
    """A validated rule set with its patterns compiled, ready to run on many rows; build it with compile_rules."""

    rules: tuple[_Rule, ...]
    labels: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Return the rule names in order, disabled ones included."""
        return tuple(rule.name for rule in self.rules)


@dataclass(frozen=True)
class RuledPrediction:
    """One row after the rules: the final label, the model's own output, and which rules changed what."""

    label: str
    probabilities: dict[str, float]
    confidence: float
    model_label: str
    abstained: bool
    rules_fired: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class RulesEffect:
    """What the rules do on a holdout: rows changed or abstained, firings, and metrics without and with them."""

    size: int
    changed: int
    abstained: int
    coverage: float
    fired: dict[str, int]
    without: dict[str, Any]
    with_rules: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the effect as JSON values, to store and show next to the rules."""
        return asdict(self)


def _require(ok: bool, problem: str) -> None:
    """Raise the problem when a check fails; compile_rules adds which rule and condition."""
    if not ok:
        raise _Invalid(problem)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    )


def _is_list(value: Any, item_ok: Any = None, limit: int = MAX_ITEMS) -> bool:
    """Tell a JSON list of 1 to ``limit`` items that all pass ``item_ok`` (any size and items without it)."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return False
    return item_ok is None or (0 < len(value) <= limit and all(map(item_ok, value)))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or _is_number(value)


def _check_fields(spec: Mapping[str, Any], required: set[str], optional: set[str]) -> None:
    """Refuse missing and unknown fields, so a typo is an error rather than a rule that silently does nothing."""
    missing, unknown = required - set(spec), set(spec) - required - optional
    _require(not missing, ERROR_MISSING_FIELDS.format(fields=", ".join(sorted(missing))))
    _require(not unknown, ERROR_UNKNOWN_FIELDS.format(fields=", ".join(sorted(map(str, unknown)))))


def _check_label(label: Any, labels: Sequence[str]) -> str:
    _require(
        isinstance(label, str) and label in labels, ERROR_UNKNOWN_LABEL.format(label=label, labels=", ".join(labels))
    )
    return label


def _compile(pattern: str, template: str) -> Any:
    """Compile with RE2 under a memory cap, so one rule cannot make serving slow or large."""
    options = re2.Options()
    options.max_mem = MAX_PATTERN_MEMORY
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0] if error.args else ""
        reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise _Invalid(template.format(pattern=pattern, reason=reason)) from None


def _phrase(word: str) -> str:
    """Escape a keyword for RE2, letting any run of whitespace stand for the spaces inside a phrase."""
    return r"\s+".join(re2.escape(part) for part in unicodedata.normalize("NFC", word).split())


def _condition(spec: Any, labels: Sequence[str]) -> _Condition:
    """Validate one condition and compile what it needs."""
    _require(isinstance(spec, Mapping), ERROR_NOT_AN_OBJECT)
    kind = spec.get("kind")
    _require(isinstance(kind, str) and kind in KINDS, ERROR_UNKNOWN_KIND.format(kind=kind))
    required, optional = _CONDITION_FIELDS[kind]
    _check_fields(spec, {"kind", *required}, optional)
    if kind == "keywords":
        words, mode = spec["words"], spec.get("mode", "any")
        word_ok = lambda word: isinstance(word, str) and 0 < len(word.strip()) <= MAX_TEXT_LENGTH  # noqa: E731
        _require(_is_list(words, word_ok), ERROR_WORDS.format(limit=MAX_ITEMS, length=MAX_TEXT_LENGTH))
        _require(mode in ("any", "all"), ERROR_MODE.format(mode=mode))
        phrases = [_phrase(word) for word in words]
        groups = [phrases] if mode == "any" else [[phrase] for phrase in phrases]
        edged = (f"(?i){WORD_EDGE_BEFORE}(?:{'|'.join(group)}){WORD_EDGE_AFTER}" for group in groups)
        return _Condition(kind, patterns=tuple(_compile(pattern, ERROR_KEYWORDS_TOO_LARGE) for pattern in edged))
    if kind == "regex":
        pattern = spec["pattern"]
        ok = isinstance(pattern, str) and 0 < len(pattern) <= MAX_PATTERN_LENGTH
        _require(ok, ERROR_PATTERN_LENGTH.format(limit=MAX_PATTERN_LENGTH))
        return _Condition(kind, patterns=(_compile(pattern, ERROR_PATTERN),))
    if kind in ("meta_equals", "meta_in"):
        _require(isinstance(spec["field"], str) and spec["field"] != "", ERROR_FIELD)
        if kind == "meta_equals":
            _require(_is_scalar(spec["value"]), ERROR_VALUE)
            return _Condition(kind, field=spec["field"], values=frozenset([str(spec["value"])]))
        _require(_is_list(spec["values"], _is_scalar), ERROR_VALUES.format(limit=MAX_ITEMS))
        return _Condition(kind, field=spec["field"], values=frozenset(map(str, spec["values"])))
    if kind == "confidence_below":
        threshold = spec["threshold"]
        _require(_is_number(threshold) and 0 < threshold <= 1, ERROR_THRESHOLD.format(threshold=threshold))
        return _Condition(kind, threshold=float(threshold))
    _require(_is_list(spec["labels"], lambda _: True), ERROR_PREDICTED_LABELS.format(limit=MAX_ITEMS))
    return _Condition(kind, values=frozenset(_check_label(label, labels) for label in spec["labels"]))


def _rule(spec: Any, labels: Sequence[str]) -> _Rule:
    """Validate one rule and compile its conditions."""
    _require(isinstance(spec, Mapping), ERROR_NOT_AN_OBJECT)
    _check_fields(spec, {"name", "conditions", "action"}, {"enabled", "label", "tag"})
    name, action, label, tag = spec["name"], spec["action"], spec.get("label"), spec.get("tag")
    _require(
        isinstance(name, str) and 0 < len(name.strip()) <= MAX_TEXT_LENGTH, ERROR_NAME.format(limit=MAX_TEXT_LENGTH)
    )
    _require(isinstance(spec.get("enabled", True), bool), ERROR_ENABLED)
    _require(isinstance(action, str) and action in ACTIONS, ERROR_UNKNOWN_ACTION.format(action=action))
    if action in _LABEL_ACTIONS:
        _require(label is not None, ERROR_LABEL_REQUIRED.format(action=action))
        _check_label(label, labels)
    _require(action in _LABEL_ACTIONS or label is None, ERROR_UNUSED_FIELD.format(action=action, field="label"))
    if action == "tag":
        ok = isinstance(tag, str) and 0 < len(tag.strip()) <= MAX_TEXT_LENGTH
        _require(ok, ERROR_TAG.format(limit=MAX_TEXT_LENGTH))
        tag = tag.strip()
    _require(action == "tag" or tag is None, ERROR_UNUSED_FIELD.format(action=action, field="tag"))
    conditions = spec["conditions"]
    ok = _is_list(conditions) and len(conditions) <= MAX_CONDITIONS
    _require(ok, ERROR_CONDITIONS.format(limit=MAX_CONDITIONS))
    compiled = []
    for position, condition in enumerate(conditions, start=1):
        try:
            compiled.append(_condition(condition, labels))
        except _Invalid as problem:
            raise _Invalid(ERROR_IN_CONDITION.format(position=position, problem=problem)) from None
    return _Rule(name.strip(), spec.get("enabled", True), action, label, tag, tuple(compiled))


def compile_rules(rules: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> CompiledRules:
    """Validate a stored rule set against the project's labels and compile it; RuleError names the rule at fault."""
    known = tuple(labels)
    if not known or len(set(known)) != len(known):
        raise RuleError(ERROR_LABELS)
    if not _is_list(rules):
        raise RuleError(ERROR_NOT_A_LIST)
    if len(rules) > MAX_RULES:
        raise RuleError(ERROR_TOO_MANY_RULES.format(limit=MAX_RULES, count=len(rules)))
    compiled: list[_Rule] = []
    positions: dict[str, int] = {}
    for position, spec in enumerate(rules, start=1):
        try:
            rule = _rule(spec, known)
            _require(rule.name not in positions, ERROR_DUPLICATE_NAME.format(other=positions.get(rule.name)))
        except _Invalid as problem:
            name = spec.get("name") if isinstance(spec, Mapping) else None
            shown = repr(name.strip()) if isinstance(name, str) else "unnamed"
            raise RuleError(ERROR_IN_RULE.format(position=position, name=shown, problem=problem)) from None
        positions[rule.name] = position
        compiled.append(rule)
    return CompiledRules(rules=tuple(compiled), labels=known)
