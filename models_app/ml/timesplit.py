"""Time split: evaluate on the newest human labels, train only on what was known before them.

A model is used on texts that arrive after it was trained, so it is evaluated the same way: the holdout is the
newest ``holdout_share`` of the human-labelled examples by ``observed_at`` (the source timestamp of the text), and
training sees only rows observed strictly before the cutoff.

Rules, in the order they apply:

* Only human labels enter the holdout (imported labels count as human). LLM and synthetic labels are suggestions,
  not ground truth: before the cutoff they train, at or after it they are dropped (``dropped_future``).
* The holdout size is counted in distinct human-labelled, dated examples, ordered by ``(observed_at, example_id)``
  so ties have one fixed order. The cutoff is the ``observed_at`` of the oldest holdout example. Human rows tied
  with it at the same instant but earlier in that order train; LLM and synthetic rows at that instant are dropped,
  because nothing orders them against the people's labels.
* With an explicit ``cutoff`` every human row observed at or after it is in the holdout and ``Split.cutoff`` is the
  given instant.
* Undated rows cannot be placed in time, so they always train and are counted in ``undated_in_train``.
* An example labelled by several people keeps one holdout row: the majority label, ties going to the row that
  comes later in ``rows``. Callers pass rows in label order, so on a tie the most recent decision wins; the other
  rows of that example are counted in ``merged_holdout_labels``.
* Train rows of a holdout example, or whose text equals a holdout text after ``normalize_text``, are removed
  (``dropped_duplicates``), so the model is never scored on a text it was trained on.

Too few labels never raise: the split comes back with ``enough=False`` and a ``reason`` written for people. Its
indexes are still filled, so a page can show what the split would look like, but only train when ``enough``.
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

HUMAN = "human"
LLM = "llm-accepted"  # an LLM label a reviewer (or the calibrated auto-accept) accepted
SYNTHETIC = "synthetic"
PROVENANCES = (HUMAN, LLM, SYNTHETIC)

UNKNOWN_PROVENANCE = "Unknown label provenance {value!r}: use one of " + ", ".join(PROVENANCES) + "."
BAD_HOLDOUT_SHARE = "holdout_share must be strictly between 0 and 1, got {value!r}."
NOT_ENOUGH_LABELS = "Not enough labels yet: {count} examples labelled by people, a split needs at least {needed}."
NOT_ENOUGH_HOLDOUT = (
    "Not enough human labels for a holdout yet: {count} examples would be held out, evaluation needs at least {needed}."
)
NOT_ENOUGH_TRAIN = "Not enough training labels yet: {count} rows outside the holdout, training needs at least {needed}."
NOT_ENOUGH_CLASSES = "Not enough classes yet: training rows outside the holdout cover only {labels}, training needs 2."


@dataclass(frozen=True)
class LabeledRow:
    """One label on one example, as the split sees it; ``provenance`` is "human", "llm-accepted" or "synthetic"."""

    example_id: int
    text: str
    observed_at: datetime | None
    label: str
    provenance: str
    weight: float = 1.0


@dataclass(frozen=True)
class Split:
    """Indexes into the rows for training and holdout, with the counts that explain what was left out."""

    train: tuple[int, ...]
    holdout: tuple[int, ...]
    cutoff: datetime | None
    dropped_duplicates: int
    dropped_future: int
    undated_in_train: int
    enough: bool
    reason: str = ""
    merged_holdout_labels: int = 0

    def summary(self) -> dict[str, Any]:
        """Return the split's counts as JSON values, for the training run's record and the dashboard."""
        return {
            "train_size": len(self.train),
            "holdout_size": len(self.holdout),
            "cutoff": None if self.cutoff is None else self.cutoff.isoformat(),
            "dropped_duplicates": self.dropped_duplicates,
            "dropped_future": self.dropped_future,
            "undated_in_train": self.undated_in_train,
            "merged_holdout_labels": self.merged_holdout_labels,
            "enough": self.enough,
            "reason": self.reason,
        }


def normalize_text(text: str) -> str:
    """Return the form two texts are compared in for duplicates: unescaped, without BOMs, casefolded, one space."""
    return " ".join(html.unescape(text).replace("\ufeff", "").casefold().split())


def _check_inputs(rows: Sequence[LabeledRow], holdout_share: float) -> None:
    """Refuse programming errors early; too few labels is not one of them."""
    if not 0 < holdout_share < 1:
        raise ValueError(BAD_HOLDOUT_SHARE.format(value=holdout_share))
    for row in rows:
        if row.provenance not in PROVENANCES:
            raise ValueError(UNKNOWN_PROVENANCE.format(value=row.provenance))


def _holdout_size(n_examples: int, holdout_share: float) -> int:
    """Round the share half up, so 0.2 of 27 examples holds out 5 (5.4) and of 28 holds out 6 (5.6)."""
    return math.floor(n_examples * holdout_share + 0.5)


def _keep_one_per_example(rows: Sequence[LabeledRow], indexes: Iterable[int]) -> tuple[tuple[int, ...], int]:
    """Keep one holdout row per example: the majority label, ties to the later row. Return it and the merged count."""
    by_example: dict[int, list[int]] = defaultdict(list)
    for index in indexes:
        by_example[rows[index].example_id].append(index)
    kept = []
    merged = 0
    for group in by_example.values():
        counts = Counter(rows[index].label for index in group)
        last_index = {rows[index].label: index for index in group}
        best = max(counts, key=lambda label: (counts[label], last_index[label]))
        kept.append(last_index[best])
        merged += len(group) - 1
    return tuple(sorted(kept)), merged


def _remove_holdout_duplicates(
    rows: Sequence[LabeledRow], candidates: Sequence[int], holdout: Sequence[int]
) -> tuple[tuple[int, ...], int]:
    """Drop train rows of holdout examples or with a holdout text, so no holdout text is ever trained on."""
    holdout_ids = {rows[index].example_id for index in holdout}
    holdout_texts = {normalize_text(rows[index].text) for index in holdout}
    train = tuple(
        index
        for index in candidates
        if rows[index].example_id not in holdout_ids and normalize_text(rows[index].text) not in holdout_texts
    )
    return train, len(candidates) - len(train)


def _labels_needed(holdout_share: float | None, min_holdout: int, min_train: int) -> int:
    """Return the fewest human-labelled examples that can fill both sides, so the message names a reachable goal."""
    needed = min_holdout + min_train
    if holdout_share is None:
        return needed
    for_holdout = max(0, math.ceil((min_holdout - 0.5) / holdout_share) - 1)
    while _holdout_size(for_holdout, holdout_share) < min_holdout:
        for_holdout += 1
    return max(needed, for_holdout)


def _enough(
    rows: Sequence[LabeledRow],
    train: Sequence[int],
    holdout: Sequence[int],
    *,
    holdout_share: float | None,
    min_holdout: int,
    min_train: int,
) -> tuple[bool, str]:
    """Decide whether the split can train and evaluate a model, and say why not in words people understand."""
    labelled = len({row.example_id for row in rows if row.provenance == HUMAN})
    needed = _labels_needed(holdout_share, min_holdout, min_train)
    if labelled < needed:
        return False, NOT_ENOUGH_LABELS.format(count=labelled, needed=needed)
    if len(holdout) < min_holdout:
        return False, NOT_ENOUGH_HOLDOUT.format(count=len(holdout), needed=min_holdout)
    if len(train) < min_train:
        return False, NOT_ENOUGH_TRAIN.format(count=len(train), needed=min_train)
    classes = sorted({rows[index].label for index in train})
    if len(classes) < 2:
        return False, NOT_ENOUGH_CLASSES.format(labels=", ".join(repr(label) for label in classes) or "no labels")
    return True, ""


def _at_or_after(observed_at: datetime, example_id: int, cutoff_at: datetime, cutoff_id: int | None) -> bool:
    """Compare a dated row with the cutoff in ``(observed_at, example_id)`` order; no id means the whole instant."""
    if observed_at != cutoff_at:
        return observed_at > cutoff_at
    return cutoff_id is None or example_id >= cutoff_id


def time_split(
    rows: Sequence[LabeledRow],
    *,
    holdout_share: float = 0.2,
    cutoff: datetime | None = None,
    min_holdout: int = 10,
    min_train: int = 20,
) -> Split:
    """Hold out the newest human labels and train on what came before, so evaluation matches how models are used.

    Datetimes must all be timezone-aware (or all naive); ``holdout_share`` is ignored when ``cutoff`` is given.
    """
    _check_inputs(rows, holdout_share)
    share_sets_size = cutoff is None
    cutoff_id: int | None = None
    if cutoff is None:
        newest: dict[int, tuple[datetime, int]] = {}
        for row in rows:
            if row.provenance == HUMAN and row.observed_at is not None:
                key = (row.observed_at, row.example_id)
                newest[row.example_id] = max(newest.get(row.example_id, key), key)
        keys = sorted(newest.values())
        size = _holdout_size(len(keys), holdout_share)
        if size:
            cutoff, cutoff_id = keys[-size]

    candidates: list[int] = []
    in_holdout: list[int] = []
    dropped_future = 0
    for index, row in enumerate(rows):
        if row.observed_at is None or cutoff is None:
            candidates.append(index)
        elif row.provenance == HUMAN:
            (in_holdout if _at_or_after(row.observed_at, row.example_id, cutoff, cutoff_id) else candidates).append(
                index
            )
        elif row.observed_at >= cutoff:
            dropped_future += 1
        else:
            candidates.append(index)

    holdout, merged = _keep_one_per_example(rows, in_holdout)
    train, dropped_duplicates = _remove_holdout_duplicates(rows, candidates, holdout)
    enough, reason = _enough(
        rows,
        train,
        holdout,
        holdout_share=holdout_share if share_sets_size else None,
        min_holdout=min_holdout,
        min_train=min_train,
    )
    return Split(
        train=train,
        holdout=holdout,
        cutoff=cutoff,
        dropped_duplicates=dropped_duplicates,
        dropped_future=dropped_future,
        undated_in_train=sum(rows[index].observed_at is None for index in train),
        enough=enough,
        reason=reason,
        merged_holdout_labels=merged,
    )


def random_split(
    rows: Sequence[LabeledRow],
    *,
    holdout_share: float = 0.2,
    seed: int = 0,
    min_holdout: int = 10,
    min_train: int = 20,
) -> Split:
    """Hold out a random share of human-labelled examples, to show how optimistic a split ignoring time would be.

    Everything else trains, whatever its date or provenance; duplicates of holdout texts are removed as in
    ``time_split``, so the two differ only in how the holdout is chosen.
    """
    _check_inputs(rows, holdout_share)
    example_ids = sorted({row.example_id for row in rows if row.provenance == HUMAN})
    size = _holdout_size(len(example_ids), holdout_share)
    order = np.random.default_rng(seed).permutation(len(example_ids))
    held_out = {example_ids[position] for position in order[:size].tolist()}

    candidates: list[int] = []
    in_holdout: list[int] = []
    for index, row in enumerate(rows):
        if row.provenance == HUMAN and row.example_id in held_out:
            in_holdout.append(index)
        else:
            candidates.append(index)

    holdout, merged = _keep_one_per_example(rows, in_holdout)
    train, dropped_duplicates = _remove_holdout_duplicates(rows, candidates, holdout)
    enough, reason = _enough(
        rows, train, holdout, holdout_share=holdout_share, min_holdout=min_holdout, min_train=min_train
    )
    return Split(
        train=train,
        holdout=holdout,
        cutoff=None,
        dropped_duplicates=dropped_duplicates,
        dropped_future=0,
        undated_in_train=sum(rows[index].observed_at is None for index in train),
        enough=enough,
        reason=reason,
        merged_holdout_labels=merged,
    )
