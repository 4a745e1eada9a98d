"""Business rules: every condition kind, RE2 matching, the order of actions, validation, the fast path and effects."""

from __future__ import annotations

import json
import time
import unicodedata
from collections import Counter
from typing import Any

import numpy as np
import pytest
import re2
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from models_app.ml.rules import (
    ERROR_CONDITIONS,
    ERROR_DUPLICATE_NAME,
    ERROR_EMPTY,
    ERROR_ENABLED,
    ERROR_FIELD,
    ERROR_IN_CONDITION,
    ERROR_IN_RULE,
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
    MAX_CONDITIONS,
    MAX_ITEMS,
    MAX_PATTERN_LENGTH,
    MAX_RULES,
    MAX_TEXT_LENGTH,
    RuledPrediction,
    RuleError,
    apply_rules,
    apply_rules_arrays,
    compile_rules,
    rules_effect,
)

LABELS = ["neg", "pos", "neu"]


def rule(name: str = "r", *conditions: dict[str, Any], action: str = "abstain", **fields: Any) -> dict[str, Any]:
    """Build a rule spec as the database stores it."""
    return {"name": name, "conditions": list(conditions), "action": action, **fields}


def keywords(*words: str, mode: str = "any") -> dict[str, Any]:
    return {"kind": "keywords", "words": list(words), "mode": mode}


def run(
    rules: list[dict[str, Any]],
    texts: list[str],
    proba: list[list[float]] | None = None,
    metas: list[dict[str, Any]] | None = None,
    labels: list[str] = LABELS,
) -> list[RuledPrediction]:
    """Compile and apply rules; by default every row is confidently 'pos'."""
    proba = proba if proba is not None else [[0.1, 0.8, 0.1]] * len(texts)
    return apply_rules(compile_rules(rules, labels), texts, metas, np.array(proba), labels)


def matches(condition: dict[str, Any], text: str, meta: dict[str, Any] | None = None) -> bool:
    """Tell whether one condition holds on one text, through an abstain rule."""
    return run([rule("r", condition)], [text], metas=None if meta is None else [meta])[0].abstained


def in_rule(problem: str, *, position: int = 1, name: str = "'r'", condition: int | None = None) -> str:
    """Build the message compile_rules gives for a problem in one rule, or in one of its conditions."""
    if condition is not None:
        problem = ERROR_IN_CONDITION.format(position=condition, problem=problem)
    return ERROR_IN_RULE.format(position=position, name=name, problem=problem)


def refused(rules: Any, labels: list[str] = LABELS) -> str:
    with pytest.raises(RuleError) as caught:
        compile_rules(rules, labels)
    return str(caught.value)


# --- keywords -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "text", "expected"),
    [
        (["refund"], "I want a refund.", True),
        (["refund"], "REFUND NOW", True),
        (["refund"], "refunds are slow", False),
        (["refund"], "nonrefundable", False),
        (["refund"], "refund_id=3", False),
        (["refund"], "refund2", False),
        (["charge back"], "please Charge  Back\nthe payment", True),
        (["charge back"], "a chargeback", False),
        (["charge back"], "charge backs", False),
        (["café"], "café au lait", True),
        (["café"], "Un CAFÉ!", True),
        (["café"], "cafés", False),
        (["café"], "décafé", False),
        (["café"], unicodedata.normalize("NFD", "a café here"), True),
        (["été"], "ÉTÉ 2024", True),
        (["c++"], "I use c++ daily", True),
        (["c++"], "c++x", False),
        (["straße"], "Die STRAẞE", True),
        (["naïve", "refund"], "so naïve", True),
    ],
)
def test_keywords_match_whole_words_case_insensitively(words: list[str], text: str, expected: bool):
    assert matches(keywords(*words), text) is expected


def test_re2_word_boundary_is_ascii_only_hence_the_unicode_edges():
    assert re2.search(r"\bcafé\b", "café au lait") is None
    assert re2.search(r"\bcafé\b", "cafés") is not None
    assert matches(keywords("café"), "café au lait")
    assert not matches(keywords("café"), "cafés")


def test_keywords_any_and_all():
    any_of = keywords("refund", "charge back")
    all_of = keywords("refund", "charge back", mode="all")
    assert matches(any_of, "refund please")
    assert not matches(all_of, "refund please")
    assert matches(all_of, "charge back or refund")
    assert not matches(any_of, "refunds and chargebacks")


def test_keywords_mode_defaults_to_any():
    assert matches({"kind": "keywords", "words": ["x", "refund"]}, "refund")


def test_keywords_escape_regex_syntax():
    assert not matches(keywords("a.c"), "abc")
    assert matches(keywords("a.c"), "see a.c now")


# --- regex ----------------------------------------------------------------------------------------------------


def test_regex_searches_as_written():
    order = {"kind": "regex", "pattern": r"order #\d{4,}"}
    assert matches(order, "about order #12345, please")
    assert not matches(order, "about order #123")
    assert not matches(order, "ORDER #12345")
    assert matches({"kind": "regex", "pattern": r"(?i)order #\d+"}, "ORDER #1")


def test_catastrophic_pattern_runs_in_linear_time():
    text = "a" * 50_000 + "b"
    start = time.perf_counter()
    predictions = run([rule("r", {"kind": "regex", "pattern": "(a+)+$"})], [text, "aaaa"])
    assert time.perf_counter() - start < 1.0
    assert [p.abstained for p in predictions] == [False, True]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a)\\1", "invalid escape sequence: \\1"),
        ("refund(?=s)", "invalid perl operator: (?="),
        ("refund(?!s)", "invalid perl operator: (?!"),
        ("(?<=a)b", "invalid perl operator: (?<="),
        ("[", "missing ]: ["),
        ("\\pL{1000}", "pattern too large - compile failed"),
    ],
)
def test_patterns_re2_rejects_are_refused(pattern: str, reason: str):
    message = refused([rule("r", {"kind": "regex", "pattern": pattern})])
    assert message == in_rule(ERROR_PATTERN.format(pattern=pattern, reason=reason), condition=1)


@pytest.mark.parametrize("pattern", ["", "a" * (MAX_PATTERN_LENGTH + 1), 3])
def test_pattern_length_is_capped(pattern: Any):
    message = refused([rule("r", {"kind": "regex", "pattern": pattern})])
    assert message == in_rule(ERROR_PATTERN_LENGTH.format(limit=MAX_PATTERN_LENGTH), condition=1)


def test_pattern_at_the_length_cap_compiles():
    assert matches({"kind": "regex", "pattern": "a?" * (MAX_PATTERN_LENGTH // 2)}, "")


# --- metadata, confidence, prediction -------------------------------------------------------------------------


def test_meta_equals_compares_strings_and_never_matches_missing():
    email = {"kind": "meta_equals", "field": "channel", "value": "email"}
    assert matches(email, "x", {"channel": "email"})
    assert not matches(email, "x", {"channel": "chat"})
    assert not matches(email, "x", {})
    assert not matches(email, "x", None)
    tier = {"kind": "meta_equals", "field": "tier", "value": 3}
    assert matches(tier, "x", {"tier": "3"})
    assert matches(tier, "x", {"tier": 3})
    assert not matches({"kind": "meta_equals", "field": "tier", "value": "None"}, "x", {"tier": None})


def test_meta_in():
    channels = {"kind": "meta_in", "field": "channel", "values": ["email", "chat"]}
    assert matches(channels, "x", {"channel": "chat"})
    assert not matches(channels, "x", {"channel": "phone"})
    assert not matches(channels, "x", {"other": "chat"})


def test_confidence_below_reads_the_models_top_probability():
    rules = [
        rule("force neg", action="force", label="neg"),
        rule("unsure", {"kind": "confidence_below", "threshold": 0.7}),
    ]
    predictions = run(rules, ["a", "b"], proba=[[0.1, 0.8, 0.1], [0.3, 0.6, 0.1]])
    assert [p.abstained for p in predictions] == [False, True]
    assert [p.confidence for p in predictions] == [0.8, 0.6]


def test_threshold_one_holds_below_certainty():
    sure = {"kind": "confidence_below", "threshold": 1}
    assert run([rule("r", sure)], ["a", "b"], proba=[[0.0, 1.0, 0.0], [0.0, 0.99, 0.01]])[1].abstained
    assert not run([rule("r", sure)], ["a"], proba=[[0.0, 1.0, 0.0]])[0].abstained


def test_predicted_in_sees_the_label_an_earlier_rule_set():
    rules = [
        rule("refunds are negative", keywords("refund"), action="force", label="neg"),
        rule("flag negatives", {"kind": "predicted_in", "labels": ["neg"]}, action="tag", tag="review"),
    ]
    predictions = run(rules, ["refund please", "great"])
    assert [p.label for p in predictions] == ["neg", "pos"]
    assert [p.tags for p in predictions] == [("review",), ()]


# --- actions and their order ----------------------------------------------------------------------------------


def test_no_rules_keep_the_models_argmax_and_ties_go_to_the_first_label():
    predictions = run([], ["a", "b"], proba=[[0.2, 0.4, 0.4], [0.5, 0.2, 0.3]])
    assert [(p.label, p.model_label, p.abstained, p.rules_fired) for p in predictions] == [
        ("pos", "pos", False, ()),
        ("neg", "neg", False, ()),
    ]
    assert predictions[0].probabilities == {"neg": 0.2, "pos": 0.4, "neu": 0.4}


def test_empty_conditions_always_hold():
    assert run([rule("all", tag="every", action="tag")], ["x"])[0].tags == ("every",)


def test_force_locks_the_label_against_later_force_and_forbid():
    rules = [
        rule("first", action="force", label="neu"),
        rule("second", action="force", label="neg"),
        rule("no neutral", action="forbid", label="neu"),
        rule("tagged", action="tag", tag="t"),
    ]
    prediction = run(rules, ["x"])[0]
    assert (prediction.label, prediction.model_label, prediction.rules_fired) == ("neu", "pos", ("first", "tagged"))


def test_force_to_the_current_label_still_fires_and_locks():
    rules = [rule("keep", action="force", label="pos"), rule("no pos", action="forbid", label="pos")]
    prediction = run(rules, ["x"])[0]
    assert (prediction.label, prediction.rules_fired) == ("pos", ("keep",))


def test_forbid_takes_the_next_most_probable_label():
    prediction = run([rule("no pos", action="forbid", label="pos")], ["x"], proba=[[0.3, 0.5, 0.2]])[0]
    assert (prediction.label, prediction.abstained, prediction.rules_fired) == ("neg", False, ("no pos",))


def test_forbid_of_another_label_does_not_fire_but_is_remembered():
    rules = [rule("no neg", action="forbid", label="neg"), rule("no pos", action="forbid", label="pos")]
    prediction = run(rules, ["x"], proba=[[0.3, 0.5, 0.2]])[0]
    assert (prediction.label, prediction.rules_fired) == ("neu", ("no pos",))


def test_forbidding_every_label_abstains_and_keeps_the_label():
    rules = [rule(f"no {label}", action="forbid", label=label) for label in ("neg", "pos", "neu")]
    prediction = run(rules, ["x"], proba=[[0.3, 0.5, 0.2]])[0]
    assert (prediction.label, prediction.abstained, prediction.rules_fired) == ("neu", True, ("no pos", "no neu"))


def test_abstain_keeps_the_best_guess_and_tags_are_deduplicated_in_order():
    rules = [
        rule("legal", keywords("lawyer"), action="tag", tag="legal"),
        rule("unsure", keywords("lawyer"), action="abstain"),
        rule("vip", action="tag", tag="vip"),
        rule("legal again", action="tag", tag="legal"),
    ]
    prediction = run(rules, ["my lawyer says"])[0]
    assert (prediction.label, prediction.abstained) == ("pos", True)
    assert prediction.tags == ("legal", "vip")
    assert prediction.rules_fired == ("legal", "unsure", "vip", "legal again")


def test_disabled_rules_are_kept_but_skipped():
    compiled = compile_rules(
        [rule("off", action="force", label="neg", enabled=False), rule("on", action="tag", tag="t")], LABELS
    )
    assert compiled.names == ("off", "on")
    prediction = apply_rules(compiled, ["x"], None, np.array([[0.1, 0.8, 0.1]]), LABELS)[0]
    assert (prediction.label, prediction.rules_fired) == ("pos", ("on",))
    assert apply_rules_arrays(compiled, ["x"], None, np.array([[0.1, 0.8, 0.1]]), LABELS)[2] == {"off": 0, "on": 1}


def test_a_label_the_model_lacks_can_be_forced_but_is_never_moved_to():
    rules = [
        rule("billing", keywords("invoice"), action="force", label="billing"),
        rule("no pos", action="forbid", label="pos"),
        rule("no neg", action="forbid", label="neg"),
    ]
    compiled = compile_rules(rules, ["neg", "pos", "billing"])
    proba = np.array([[0.4, 0.6], [0.4, 0.6]])
    predictions = apply_rules(compiled, ["invoice 3", "hello"], None, proba, ["neg", "pos"])
    assert [(p.label, p.abstained) for p in predictions] == [("billing", False), ("neg", True)]
    assert predictions[0].probabilities == {"neg": 0.4, "pos": 0.6}
    labels, abstained, fired = apply_rules_arrays(compiled, ["invoice 3", "hello"], None, proba, ["neg", "pos"])
    assert (labels.tolist(), abstained.tolist()) == (["billing", "neg"], [False, True])
    assert fired == {"billing": 1, "no pos": 1, "no neg": 1}


# --- validation -----------------------------------------------------------------------------------------------


UNKNOWN_SPAM = ERROR_UNKNOWN_LABEL.format(label="spam", labels="neg, pos, neu")


@pytest.mark.parametrize(
    ("spec", "problem", "name"),
    [
        ("refund", ERROR_NOT_AN_OBJECT, "unnamed"),
        ({"name": "r", "conditions": []}, ERROR_MISSING_FIELDS.format(fields="action"), "'r'"),
        ({"conditions": [], "action": "tag"}, ERROR_MISSING_FIELDS.format(fields="name"), "unnamed"),
        (rule(priority=1), ERROR_UNKNOWN_FIELDS.format(fields="priority"), "'r'"),
        (rule(action="route"), ERROR_UNKNOWN_ACTION.format(action="route"), "'r'"),
        (rule(action="force"), ERROR_LABEL_REQUIRED.format(action="force"), "'r'"),
        (rule(action="forbid", label="spam"), UNKNOWN_SPAM, "'r'"),
        (rule(action="tag"), ERROR_TAG.format(limit=MAX_TEXT_LENGTH), "'r'"),
        (rule(action="tag", tag="  "), ERROR_TAG.format(limit=MAX_TEXT_LENGTH), "'r'"),
        (rule(action="abstain", label="neg"), ERROR_UNUSED_FIELD.format(action="abstain", field="label"), "'r'"),
        (rule(action="force", label="neg", tag="t"), ERROR_UNUSED_FIELD.format(action="force", field="tag"), "'r'"),
        (rule("x" * 101), ERROR_NAME.format(limit=MAX_TEXT_LENGTH), repr("x" * 101)),
        (rule(" "), ERROR_NAME.format(limit=MAX_TEXT_LENGTH), "''"),
        (rule(enabled="yes"), ERROR_ENABLED, "'r'"),
        ({**rule(), "conditions": "refund"}, ERROR_CONDITIONS.format(limit=MAX_CONDITIONS), "'r'"),
        (rule("r", *[keywords("a")] * 11), ERROR_CONDITIONS.format(limit=MAX_CONDITIONS), "'r'"),
    ],
)
def test_rule_fields_are_validated(spec: Any, problem: str, name: str):
    assert refused([spec]) == in_rule(problem, name=name)


WORDS = ERROR_WORDS.format(limit=MAX_ITEMS, length=MAX_TEXT_LENGTH)


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("refund", ERROR_NOT_AN_OBJECT),
        ({"kind": "sentiment"}, ERROR_UNKNOWN_KIND.format(kind="sentiment")),
        ({"words": ["a"]}, ERROR_UNKNOWN_KIND.format(kind=None)),
        ({"kind": "keywords"}, ERROR_MISSING_FIELDS.format(fields="words")),
        ({"kind": "keywords", "words": ["a"], "case": True}, ERROR_UNKNOWN_FIELDS.format(fields="case")),
        (keywords(), WORDS),
        (keywords("ok", " "), WORDS),
        (keywords("x" * 101), WORDS),
        (keywords(*["w"] * 201), WORDS),
        ({"kind": "keywords", "words": "refund"}, WORDS),
        (keywords("ok", mode="some"), ERROR_MODE.format(mode="some")),
        ({"kind": "meta_equals", "field": "", "value": "a"}, ERROR_FIELD),
        ({"kind": "meta_equals", "field": "c", "value": ["a"]}, ERROR_VALUE),
        ({"kind": "meta_equals", "field": "c", "value": None}, ERROR_VALUE),
        ({"kind": "meta_in", "field": "c", "values": []}, ERROR_VALUES.format(limit=MAX_ITEMS)),
        ({"kind": "meta_in", "field": "c", "values": [{"a": 1}]}, ERROR_VALUES.format(limit=MAX_ITEMS)),
        ({"kind": "confidence_below", "threshold": 0}, ERROR_THRESHOLD.format(threshold=0)),
        ({"kind": "confidence_below", "threshold": 1.5}, ERROR_THRESHOLD.format(threshold=1.5)),
        ({"kind": "confidence_below", "threshold": True}, ERROR_THRESHOLD.format(threshold=True)),
        ({"kind": "confidence_below", "threshold": 10**400}, ERROR_THRESHOLD.format(threshold=10**400)),
        ({"kind": "confidence_below", "threshold": "0.5"}, ERROR_THRESHOLD.format(threshold="0.5")),
        ({"kind": "confidence_below", "threshold": float("nan")}, ERROR_THRESHOLD.format(threshold=float("nan"))),
        ({"kind": "predicted_in", "labels": []}, ERROR_PREDICTED_LABELS.format(limit=MAX_ITEMS)),
        ({"kind": "predicted_in", "labels": ["pos", "spam"]}, UNKNOWN_SPAM),
    ],
)
def test_conditions_are_validated(condition: Any, problem: str):
    assert refused([rule("r", keywords("ok"), condition)]) == in_rule(problem, condition=2)


def test_messages_name_the_rule_by_position_and_name():
    rules = [rule("fine"), rule("refunds", keywords("refund"), action="force", label="spam")]
    assert refused(rules) == in_rule(UNKNOWN_SPAM, position=2, name="'refunds'")


def test_duplicate_names_are_refused():
    assert refused([rule("same"), rule(" same ")]) == in_rule(
        ERROR_DUPLICATE_NAME.format(other=1), position=2, name="'same'"
    )


def test_rule_set_shape_and_size_are_validated():
    assert refused(rule()) == ERROR_NOT_A_LIST
    assert refused("rules") == ERROR_NOT_A_LIST
    assert refused([rule(f"r{i}") for i in range(MAX_RULES + 1)]) == ERROR_TOO_MANY_RULES.format(
        limit=MAX_RULES, count=MAX_RULES + 1
    )
    assert compile_rules([rule(f"r{i}") for i in range(MAX_RULES)], LABELS).names[-1] == f"r{MAX_RULES - 1}"
    assert refused([], labels=[]) == ERROR_LABELS
    assert refused([], labels=["a", "a"]) == ERROR_LABELS


def test_compile_accepts_json_round_trips():
    rules = [
        rule("r1", keywords("refund", "charge back", mode="all"), action="force", label="neg", enabled=True),
        rule("r2", {"kind": "meta_in", "field": "channel", "values": ["email", 2, True]}, action="tag", tag="x"),
        rule("r3", {"kind": "predicted_in", "labels": ["neg"]}, {"kind": "confidence_below", "threshold": 0.5}),
    ]
    assert compile_rules(json.loads(json.dumps(rules)), LABELS).names == ("r1", "r2", "r3")


def test_inputs_are_checked_when_applying():
    compiled = compile_rules([rule()], LABELS)
    with pytest.raises(RuleError) as caught:
        apply_rules(compiled, ["a", "b"], None, np.ones((2, 2)), LABELS)
    assert str(caught.value) == ERROR_PROBA.format(expected=(2, 3), got=(2, 2))
    with pytest.raises(RuleError) as caught:
        apply_rules_arrays(compiled, ["a"], None, np.array([[np.nan, 1.0, 0.0]]), LABELS)
    assert str(caught.value) == ERROR_PROBA.format(expected=(1, 3), got=(1, 3))
    with pytest.raises(RuleError) as caught:
        apply_rules(compiled, ["a"], [{}, {}], np.ones((1, 3)), LABELS)
    assert str(caught.value) == ERROR_METAS_LENGTH.format(metas=2, texts=1)
    with pytest.raises(RuleError) as caught:
        rules_effect(compiled, ["a"], None, np.ones((1, 3)), LABELS, [])
    assert str(caught.value) == ERROR_Y_TRUE_LENGTH.format(y_true=0, texts=1)
    with pytest.raises(RuleError) as caught:
        rules_effect(compiled, [], None, np.ones((0, 3)), LABELS, [])
    assert str(caught.value) == ERROR_EMPTY


# --- the fast path equals the reference walk ------------------------------------------------------------------

VOCABULARY = ["refund", "Refunds", "café", "CAFÉ", "cafés", "charge", "back", "chargeback", "ok", "42", "!"]
WORD_LISTS = ["refund", "café", "charge back", "ok", "42"]
PROJECT_LABELS = ["a", "b", "c", "d"]
MODEL_LABELS = ["a", "b", "c"]
META_CHOICES = [{"channel": "email"}, {"channel": "chat"}, {"channel": 1}, {}, {"channel": None}]

conditions = st.one_of(
    st.builds(
        lambda words, mode: {"kind": "keywords", "words": words, "mode": mode},
        st.lists(st.sampled_from(WORD_LISTS), min_size=1, max_size=3),
        st.sampled_from(["any", "all"]),
    ),
    st.builds(lambda p: {"kind": "regex", "pattern": p}, st.sampled_from(["^ok", "(?i)caf", r"\d+", "refund$"])),
    st.builds(lambda v: {"kind": "meta_equals", "field": "channel", "value": v}, st.sampled_from(["email", 1])),
    st.builds(
        lambda v: {"kind": "meta_in", "field": "channel", "values": v},
        st.lists(st.sampled_from(["email", "chat", "1"]), min_size=1, max_size=2),
    ),
    st.builds(lambda t: {"kind": "confidence_below", "threshold": t}, st.sampled_from([0.3, 0.45, 0.6, 1.0])),
    st.builds(
        lambda labels: {"kind": "predicted_in", "labels": labels},
        st.lists(st.sampled_from(PROJECT_LABELS), min_size=1, max_size=3),
    ),
)
rule_bodies = st.fixed_dictionaries(
    {
        "conditions": st.lists(conditions, max_size=3),
        "action": st.sampled_from(["force", "forbid", "forbid", "abstain", "tag"]),
        "label": st.sampled_from(PROJECT_LABELS),
        "tag": st.sampled_from(["x", "y"]),
        "enabled": st.sampled_from([True, True, True, False]),
    }
)


def as_rules(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Name the rules and drop the fields their action does not take."""
    rules = []
    for position, body in enumerate(bodies):
        spec = {"name": f"rule {position}", **body}
        if spec["action"] not in ("force", "forbid"):
            del spec["label"]
        if spec["action"] != "tag":
            del spec["tag"]
        rules.append(spec)
    return rules


@hypothesis_settings(max_examples=150, deadline=None)
@given(
    bodies=st.lists(rule_bodies, max_size=8),
    texts=st.lists(st.lists(st.sampled_from(VOCABULARY), max_size=4).map(" ".join), min_size=0, max_size=12),
    seed=st.integers(0, 2**32 - 1),
    with_metas=st.booleans(),
)
def test_arrays_equal_the_row_by_row_walk(bodies: list[dict[str, Any]], texts: list[str], seed: int, with_metas: bool):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(len(texts), len(MODEL_LABELS))).astype(float) + 0.01
    proba = scores / scores.sum(axis=1, keepdims=True)
    metas = [META_CHOICES[i] for i in rng.integers(0, len(META_CHOICES), size=len(texts))] if with_metas else None
    compiled = compile_rules(as_rules(bodies), PROJECT_LABELS)

    predictions = apply_rules(compiled, texts, metas, proba, MODEL_LABELS)
    labels, abstained, fired = apply_rules_arrays(compiled, texts, metas, proba, MODEL_LABELS)

    assert labels.tolist() == [p.label for p in predictions]
    assert abstained.tolist() == [p.abstained for p in predictions]
    counts = Counter(name for p in predictions for name in p.rules_fired)
    assert fired == {name: counts[name] for name in compiled.names}
    assert [p.model_label for p in predictions] == [MODEL_LABELS[i] for i in proba.argmax(axis=1)]


# --- effect on a holdout --------------------------------------------------------------------------------------

EFFECT_RULES = [
    rule("refunds are negative", keywords("refund"), action="force", label="neg"),
    rule(
        "no neutral on email",
        {"kind": "meta_equals", "field": "channel", "value": "email"},
        action="forbid",
        label="neu",
    ),
    rule("unsure", {"kind": "confidence_below", "threshold": 0.5}),
    rule("off", action="force", label="neu", enabled=False),
]
EFFECT_TEXTS = ["I want a refund", "great product", "meh", "terrible", "okay I guess", "refund please"]
EFFECT_METAS = [{"channel": c} for c in ("email", "email", "chat", "chat", "email", "email")]
EFFECT_PROBA = np.array(
    [[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.35, 0.35], [0.6, 0.3, 0.1], [0.1, 0.3, 0.6], [0.5, 0.1, 0.4]]
)
EFFECT_TRUTH = ["neg", "pos", "neu", "neg", "pos", "neu"]


def test_rules_on_the_hand_computed_holdout():
    predictions = apply_rules(compile_rules(EFFECT_RULES, LABELS), EFFECT_TEXTS, EFFECT_METAS, EFFECT_PROBA, LABELS)
    assert [(p.model_label, p.label, p.abstained, p.rules_fired) for p in predictions] == [
        ("pos", "neg", False, ("refunds are negative",)),
        ("pos", "pos", False, ()),
        ("pos", "pos", True, ("unsure",)),
        ("neg", "neg", False, ()),
        ("neu", "pos", False, ("no neutral on email",)),
        ("neg", "neg", False, ("refunds are negative",)),
    ]


def test_rules_effect_on_the_hand_computed_holdout():
    compiled = compile_rules(EFFECT_RULES, LABELS)

    effect = rules_effect(compiled, EFFECT_TEXTS, EFFECT_METAS, EFFECT_PROBA, LABELS, EFFECT_TRUTH)

    assert (effect.size, effect.changed, effect.abstained) == (6, 2, 1)
    assert effect.coverage == pytest.approx(5 / 6)
    assert effect.fired == {"refunds are negative": 2, "no neutral on email": 1, "unsure": 1, "off": 0}
    # Without: model says pos, pos, pos, neg, neu, neg. F1: neg 2·1/(2+2), pos 2·1/(2+3), neu 0.
    assert effect.without == {
        "answered": 6,
        "accuracy": pytest.approx(2 / 6),
        "macro_f1": pytest.approx((0.5 + 0.4 + 0.0) / 3),
        "per_class_recall": {"neg": 0.5, "pos": 0.5, "neu": 0.0},
    }
    # With, on the 5 answered rows: neg, pos, neg, pos, neg against neg, pos, neg, pos, neu.
    assert effect.with_rules == {
        "answered": 5,
        "accuracy": pytest.approx(4 / 5),
        "macro_f1": pytest.approx((0.8 + 1.0 + 0.0) / 3),
        "per_class_recall": {"neg": 1.0, "pos": 1.0, "neu": 0.0},
    }
    assert json.loads(json.dumps(effect.to_dict()))["fired"]["off"] == 0


def test_rules_effect_when_abstaining_removes_a_class_or_everything():
    proba = np.array([[0.9, 0.05, 0.05], [0.2, 0.4, 0.4]])
    unsure = compile_rules([rule("unsure", {"kind": "confidence_below", "threshold": 0.5})], LABELS)
    effect = rules_effect(unsure, ["a", "b"], None, proba, LABELS, ["neg", "neu"])
    assert effect.with_rules["per_class_recall"] == {"neg": 1.0, "neu": None}
    assert effect.without["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert effect.with_rules["macro_f1"] == 1.0

    everything = compile_rules([rule("all")], LABELS)
    effect = rules_effect(everything, ["a", "b"], None, proba, LABELS, ["neg", "neu"])
    assert (effect.coverage, effect.changed) == (0.0, 0)
    assert effect.with_rules == {
        "answered": 0,
        "accuracy": None,
        "macro_f1": None,
        "per_class_recall": {"neg": None, "neu": None},
    }
