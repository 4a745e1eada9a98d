"""Time and random splits: the holdout is human and newest, training never sees it, and small data is refused kindly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from models_app.ml.timesplit import (
    BAD_HOLDOUT_SHARE,
    HUMAN,
    LLM,
    NOT_ENOUGH_CLASSES,
    NOT_ENOUGH_HOLDOUT,
    NOT_ENOUGH_LABELS,
    PROVENANCES,
    SYNTHETIC,
    UNKNOWN_PROVENANCE,
    LabeledRow,
    Split,
    normalize_text,
    random_split,
    time_split,
)

START = datetime(2024, 1, 1, tzinfo=UTC)

# Texts that collide after normalisation, so duplicates of holdout texts turn up often.
TEXTS = [
    "Great video",
    "great   VIDEO ",
    "\ufeffGreat video",
    "Buy now &amp; save",
    "buy now & save",
    "Subscribe to my channel<br>",
    "first",
    "First!",
    "nice song",
    "check my profile",
]


def at(hours: int) -> datetime:
    """Return a timestamp a whole number of hours after the start, so ties are easy to produce."""
    return START + timedelta(hours=hours)


rows_strategy = st.lists(
    st.builds(
        LabeledRow,
        example_id=st.integers(0, 15),
        text=st.sampled_from(TEXTS),
        observed_at=st.integers(-3, 12).map(lambda hours: None if hours < 0 else at(hours)),
        label=st.sampled_from(["spam", "ham", "other"]),
        provenance=st.sampled_from([HUMAN, HUMAN, *PROVENANCES]),
        weight=st.floats(0.0, 2.0),
    ),
    min_size=1,
    max_size=120,
)


def expected_holdout_size(rows: list[LabeledRow], share: float) -> int:
    """Count distinct dated human examples and round the share half up, as the split promises."""
    examples = {row.example_id for row in rows if row.provenance == HUMAN and row.observed_at is not None}
    return int(len(examples) * share + 0.5)


def assert_split_invariants(rows: list[LabeledRow], split: Split) -> None:
    """Check what every split promises, whatever the rows."""
    holdout_rows = [rows[index] for index in split.holdout]
    train_rows = [rows[index] for index in split.train]

    assert all(row.provenance == HUMAN for row in holdout_rows)
    assert len({row.example_id for row in holdout_rows}) == len(holdout_rows)
    assert set(split.train).isdisjoint(split.holdout)
    assert list(split.train) == sorted(split.train)
    assert list(split.holdout) == sorted(split.holdout)

    holdout_texts = {normalize_text(row.text) for row in holdout_rows}
    holdout_ids = {row.example_id for row in holdout_rows}
    assert not any(normalize_text(row.text) in holdout_texts for row in train_rows)
    assert not any(row.example_id in holdout_ids for row in train_rows)

    assert split.undated_in_train == sum(row.observed_at is None for row in train_rows)
    accounted = (
        len(split.train)
        + len(split.holdout)
        + split.dropped_duplicates
        + split.dropped_future
        + split.merged_holdout_labels
    )
    assert accounted == len(rows)
    assert split.enough == (split.reason == "")
    if split.enough:
        assert len({row.label for row in train_rows}) >= 2


@hypothesis_settings(max_examples=120, deadline=None)
@given(rows=rows_strategy, share=st.sampled_from([0.1, 0.2, 0.25, 0.5]))
def test_time_split_holds_out_the_newest_human_labels(rows: list[LabeledRow], share: float):
    split = time_split(rows, holdout_share=share, min_holdout=1, min_train=1)

    assert_split_invariants(rows, split)
    holdout_rows = [rows[index] for index in split.holdout]
    train_rows = [rows[index] for index in split.train]
    assert all(row.observed_at is not None for row in holdout_rows)
    assert len(split.holdout) == expected_holdout_size(rows, share)
    if not split.holdout:
        assert split.cutoff is None
        return
    assert split.cutoff == min(row.observed_at for row in holdout_rows)
    newest_train = max((row.observed_at for row in train_rows if row.observed_at is not None), default=None)
    if newest_train is not None:
        assert min(row.observed_at for row in holdout_rows) >= newest_train
    for row in train_rows:
        if row.provenance != HUMAN and row.observed_at is not None:
            assert row.observed_at < split.cutoff
    # Every human example observed strictly after the cutoff is held out.
    later = {
        row.example_id
        for row in rows
        if row.provenance == HUMAN and row.observed_at is not None and row.observed_at > split.cutoff
    }
    assert later <= {row.example_id for row in holdout_rows}


@hypothesis_settings(max_examples=120, deadline=None)
@given(rows=rows_strategy, cutoff_hour=st.integers(0, 13))
def test_time_split_with_an_explicit_cutoff(rows: list[LabeledRow], cutoff_hour: int):
    cutoff = at(cutoff_hour)

    split = time_split(rows, cutoff=cutoff, min_holdout=1, min_train=1)

    assert_split_invariants(rows, split)
    assert split.cutoff == cutoff
    assert all(rows[index].observed_at >= cutoff for index in split.holdout)
    assert all(rows[index].observed_at is None or rows[index].observed_at < cutoff for index in split.train)
    human_after = {
        row.example_id
        for row in rows
        if row.provenance == HUMAN and row.observed_at is not None and row.observed_at >= cutoff
    }
    assert {rows[index].example_id for index in split.holdout} == human_after
    assert split.dropped_future == sum(
        row.provenance != HUMAN and row.observed_at is not None and row.observed_at >= cutoff for row in rows
    )


@hypothesis_settings(max_examples=60, deadline=None)
@given(rows=rows_strategy)
def test_time_split_is_deterministic(rows: list[LabeledRow]):
    assert time_split(rows) == time_split(list(rows))
    assert random_split(rows, seed=3) == random_split(list(rows), seed=3)


@hypothesis_settings(max_examples=120, deadline=None)
@given(rows=rows_strategy, seed=st.integers(0, 2**32 - 1))
def test_random_split_holds_out_human_examples_only(rows: list[LabeledRow], seed: int):
    split = random_split(rows, holdout_share=0.2, seed=seed, min_holdout=1, min_train=1)

    assert_split_invariants(rows, split)
    assert split.cutoff is None
    assert split.dropped_future == 0
    human_examples = {row.example_id for row in rows if row.provenance == HUMAN}
    assert len(split.holdout) == int(len(human_examples) * 0.2 + 0.5)


def labelled_stream(count: int, *, provenance: str = HUMAN, start_id: int = 0, hour0: int = 0) -> list[LabeledRow]:
    """Make one distinct text per example, observed an hour apart, alternating two labels."""
    return [
        LabeledRow(
            example_id=start_id + offset,
            text=f"comment number {start_id + offset}",
            observed_at=at(hour0 + offset),
            label="spam" if offset % 2 else "ham",
            provenance=provenance,
        )
        for offset in range(count)
    ]


def test_time_split_on_a_plain_stream():
    rows = labelled_stream(100)

    split = time_split(rows)

    assert split.enough
    assert split.holdout == tuple(range(80, 100))
    assert split.train == tuple(range(80))
    assert split.cutoff == at(80)
    assert (split.dropped_duplicates, split.dropped_future, split.undated_in_train) == (0, 0, 0)


def test_llm_and_synthetic_labels_train_before_the_cutoff_and_are_dropped_after():
    people = labelled_stream(50)
    machine = [
        LabeledRow(1000 + hour, f"machine text {hour}", at(hour), "spam" if hour % 2 else "ham", provenance)
        for hour in range(0, 60, 3)
        for provenance in (LLM, SYNTHETIC)
    ]
    rows = people + machine

    split = time_split(rows)

    assert split.cutoff == at(40)
    assert {rows[index].provenance for index in split.holdout} == {HUMAN}
    trained_machine = [rows[index] for index in split.train if rows[index].provenance != HUMAN]
    assert trained_machine and all(row.observed_at < at(40) for row in trained_machine)
    assert split.dropped_future == sum(row.observed_at >= at(40) for row in machine)


def test_ties_at_the_cutoff_are_ordered_by_example_id():
    # 20 examples all observed at the same instant: the share still holds, newest ids are held out.
    rows = [
        LabeledRow(example_id, f"text {example_id}", at(5), "spam" if example_id % 2 else "ham", HUMAN)
        for example_id in range(20)
    ]
    rows.append(LabeledRow(99, "an llm label at the same instant", at(5), "spam", LLM))

    split = time_split(rows, min_holdout=1, min_train=1)

    assert [rows[index].example_id for index in split.holdout] == [16, 17, 18, 19]
    assert split.train == tuple(range(16))
    assert split.cutoff == at(5)
    assert split.dropped_future == 1  # a machine label at the cutoff instant cannot be ordered against people


def test_duplicate_texts_of_the_holdout_are_removed_from_training():
    rows = labelled_stream(50)
    rows[3] = LabeledRow(3, "  COMMENT number 45 ", at(3), "spam", HUMAN)  # same text as example 45, older
    rows.append(LabeledRow(500, "comment&#32;number 47", None, "ham", LLM))
    rows.append(LabeledRow(501, "a fresh undated text", None, "ham", SYNTHETIC))

    split = time_split(rows)

    assert 3 not in split.train
    assert 50 not in split.train
    assert 51 in split.train
    assert split.dropped_duplicates == 2
    assert split.undated_in_train == 1


def test_two_human_labels_on_a_holdout_example_keep_the_majority_then_the_later_one():
    rows = labelled_stream(50)
    newest = rows[-1]
    rows += [
        LabeledRow(newest.example_id, newest.text, newest.observed_at, "ham", HUMAN),
        LabeledRow(newest.example_id, newest.text, newest.observed_at, "ham", HUMAN),
    ]
    second_newest = rows[48]
    rows.append(LabeledRow(second_newest.example_id, second_newest.text, second_newest.observed_at, "spam", HUMAN))

    split = time_split(rows)

    kept = {rows[index].example_id: (index, rows[index].label) for index in split.holdout}
    assert kept[49] == (51, "ham")  # spam once, ham twice: the majority, from its latest row
    assert kept[48] == (52, "spam")  # ham once, spam once: the later row wins the tie
    assert split.merged_holdout_labels == 3
    assert len(split.holdout) == 10


def test_undated_rows_always_train():
    rows = labelled_stream(60) + [
        LabeledRow(900 + offset, f"old import {offset}", None, "ham" if offset % 2 else "spam", HUMAN)
        for offset in range(5)
    ]

    split = time_split(rows)

    assert split.undated_in_train == 5
    assert set(range(60, 65)) <= set(split.train)
    assert len(split.holdout) == 12


@pytest.mark.parametrize("count", [0, 1, 12, 47])
def test_too_few_labels_is_not_enough_with_a_reason(count: int):
    split = time_split(labelled_stream(count))

    assert not split.enough
    assert split.reason == NOT_ENOUGH_LABELS.format(count=count, needed=48)


def test_the_reason_names_the_missing_side():
    undated = [
        LabeledRow(offset, f"text {offset}", None, "spam" if offset % 2 else "ham", HUMAN) for offset in range(60)
    ]
    assert time_split(undated).reason == NOT_ENOUGH_HOLDOUT.format(count=0, needed=10)

    one_class = [LabeledRow(offset, f"text {offset}", at(offset), "spam", HUMAN) for offset in range(60)]
    split = time_split(one_class)
    assert not split.enough
    assert split.reason == NOT_ENOUGH_CLASSES.format(labels="'spam'")
    assert len(split.holdout) == 12  # the indexes are still there to show


def test_explicit_cutoff_needs_only_the_minimums():
    split = time_split(labelled_stream(30), cutoff=at(20))

    assert split.enough
    assert len(split.holdout) == 10
    assert len(split.train) == 20


def test_random_split_depends_on_the_seed_only():
    rows = labelled_stream(200)

    first, again, other = random_split(rows, seed=1), random_split(rows, seed=1), random_split(rows, seed=2)

    assert first == again
    assert first.holdout != other.holdout
    assert first.enough
    assert len(first.holdout) == 40
    assert first.holdout != tuple(range(160, 200))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="holdout_share"):
        time_split([], holdout_share=1.0)
    with pytest.raises(ValueError) as error:
        random_split([], holdout_share=0)
    assert str(error.value) == BAD_HOLDOUT_SHARE.format(value=0)
    row = LabeledRow(1, "text", None, "spam", "imported")
    with pytest.raises(ValueError) as error:
        time_split([row])
    assert str(error.value) == UNKNOWN_PROVENANCE.format(value="imported")


def test_normalize_text():
    assert normalize_text("  Fish &amp;\tCHIPS\n") == "fish & chips"
    assert normalize_text("\ufeffStraße") == normalize_text("STRASSE")
    assert normalize_text("a<br>b") != normalize_text("a b")
