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

from .compile import (
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
    compile_rules,
)
from .run import apply_rules, apply_rules_arrays, rules_effect

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
