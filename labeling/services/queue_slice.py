"""Replacing the ranked front of a project's queue (the slice) in one transaction, for the ranking jobs.

The queue holds a ready row per (example, slot) for every example still waiting for labels, in random
(exploration) order with priorities in [0, 1). A ranking job computes a slice and hands it here: its rows get
priorities above 1, in the slice's order, with the source's reason and score. The previous slice falls back
to random order. Leased and labeled rows are never touched, and other rows stay claimable throughout, so an
annotator never finds the queue empty while it is rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from labeling.models import Project, QueueItem, QueueReason
from labeling.services.queue import REASON_EXPLORATION, _db_time

# Slice priorities are RANKED_FLOOR + (n - position) / n, above every unranked row's random priority in [0, 1).
RANKED_FLOOR = 1.0
REASON_CURRICULUM = "An easy item to start with (the model is {ease:.0%} sure): new annotators begin with these."


@dataclass(frozen=True)
class SliceItem:
    """One ranked item: which example, why (reason code and sentence), and its source's score."""

    example_id: int
    reason_code: str
    reason: str
    score: float


@dataclass(frozen=True)
class SliceResult:
    """What the replacement changed, in rows."""

    ranked: int
    re_review: int
    demoted: int
    curriculum: int


def _random_priority_sql() -> str:
    if connection.vendor == "postgresql":
        return "random()"
    return "(abs(random()) / 9223372036854775808.0)"


def queue_slice_replace(
    *,
    project: Project,
    items: Sequence[SliceItem],
    model_number: int | None,
    curriculum: Sequence[tuple[int, float]] = (),
) -> SliceResult:
    """Make `items` the front of the queue, in order; the previous slice returns to random order.

    Items with reason `label_error` are labeled examples sent for a second look: each gets a new slot, which the
    claim serves only to someone who has not labeled the example. `curriculum` marks (example id, ease) rows that a
    new annotator's first claims take, easiest first. Items whose rows were leased or labeled meanwhile are skipped.
    """
    queue = QueueItem._meta.db_table
    regular = [item for item in items if item.reason_code != QueueReason.LABEL_ERROR]
    re_review = [item for item in items if item.reason_code == QueueReason.LABEL_ERROR]
    n = max(len(items), 1)
    priority = {item.example_id: RANKED_FLOOR + (n - position) / n for position, item in enumerate(items)}
    now = _db_time(timezone.now())
    protected = f"('{QueueReason.GOLD}', '{QueueReason.LABEL_ERROR}')"
    with transaction.atomic(), connection.cursor() as cursor:
        demoted = 0
        # Two statements, so each can use its index: the ranked range of priorities, and the curriculum rows.
        for condition, value in (("priority >= %s", RANKED_FLOOR), ("reason_code = %s", QueueReason.CURRICULUM)):
            cursor.execute(
                f"""UPDATE {queue}
                       SET priority = {_random_priority_sql()}, reason_code = %s, reason = %s, score = NULL,
                           model_version = NULL
                     WHERE project_id = %s AND state = 'ready' AND reason_code NOT IN {protected} AND {condition}""",
                [QueueReason.EXPLORATION, REASON_EXPLORATION, project.pk, value],
            )
            demoted += max(cursor.rowcount, 0)
        cursor.execute(
            f"DELETE FROM {queue} WHERE project_id = %s AND state = 'ready' AND reason_code = %s",
            [project.pk, QueueReason.LABEL_ERROR],
        )
        ranked = 0
        if regular:
            _update_by_example(
                cursor,
                project_id=project.pk,
                rows=[
                    (item.example_id, priority[item.example_id], item.reason_code, item.reason[:300], float(item.score))
                    for item in regular
                ],
                model_number=model_number,
                only_reason=None,
            )
            cursor.execute(
                f"SELECT COUNT(DISTINCT example_id) FROM {queue} WHERE project_id = %s AND state = 'ready'"
                " AND priority >= %s AND reason_code <> %s",
                [project.pk, RANKED_FLOOR, QueueReason.LABEL_ERROR],
            )
            ranked = int(cursor.fetchone()[0])
        added = 0
        for item in re_review:
            cursor.execute(
                f"""INSERT INTO {queue} (project_id, example_id, slot, priority, reason_code, reason, score,
                                         model_version, suggestion_source, state, created_at)
                    SELECT %s, %s, COALESCE(MAX(q.slot), -1) + 1, %s, %s, %s, %s, %s, '', 'ready', %s
                      FROM {queue} q WHERE q.example_id = %s AND q.reason_code <> %s""",
                [
                    project.pk,
                    item.example_id,
                    priority[item.example_id],
                    QueueReason.LABEL_ERROR,
                    item.reason[:300],
                    float(item.score),
                    model_number,
                    now,
                    item.example_id,
                    QueueReason.GOLD,
                ],
            )
            added += max(cursor.rowcount, 0)
        marked = 0
        if curriculum:
            _update_by_example(
                cursor,
                project_id=project.pk,
                rows=[
                    (example_id, None, QueueReason.CURRICULUM, REASON_CURRICULUM.format(ease=ease), float(ease))
                    for example_id, ease in curriculum
                ],
                model_number=model_number,
                only_reason=QueueReason.EXPLORATION,
            )
            cursor.execute(
                f"SELECT COUNT(DISTINCT example_id) FROM {queue} WHERE project_id = %s AND state = 'ready'"
                " AND reason_code = %s",
                [project.pk, QueueReason.CURRICULUM],
            )
            marked = int(cursor.fetchone()[0])
    return SliceResult(ranked=ranked, re_review=added, demoted=demoted, curriculum=marked)


def _update_by_example(
    cursor: Any,
    *,
    project_id: int,
    rows: list[tuple[int, float | None, str, str, float]],
    model_number: int | None,
    only_reason: str | None,
) -> None:
    """Set (priority, reason code, reason, score) on the ready rows of each example id, in one statement on PostgreSQL.

    A priority of None keeps the row's priority. `only_reason` limits the change to rows with that reason code and
    an unranked priority (curriculum marks go on the random part of the queue only).
    """
    queue = QueueItem._meta.db_table
    if only_reason is None:
        guard, guard_params = "q.reason_code <> %s", [QueueReason.GOLD]
    else:
        guard, guard_params = "q.reason_code = %s AND q.priority < %s", [only_reason, RANKED_FLOOR]
    if connection.vendor == "postgresql":
        # One join on example id; per-row UPDATEs would each scan the project's ready rows without fresh statistics.
        cursor.execute(
            f"""UPDATE {queue} q
                   SET priority = COALESCE(v.priority, q.priority), reason_code = v.reason_code, reason = v.reason,
                       score = v.score, model_version = %s
                  FROM unnest(%s::bigint[], %s::float8[], %s::text[], %s::text[], %s::float8[])
                       AS v(example_id, priority, reason_code, reason, score)
                 WHERE q.example_id = v.example_id AND q.project_id = %s AND q.state = 'ready' AND {guard}""",
            [model_number, *(list(column) for column in zip(*rows, strict=True)), project_id, *guard_params],
        )
        return
    cursor.executemany(
        f"""UPDATE {queue} AS q
               SET priority = COALESCE(%s, q.priority), reason_code = %s, reason = %s, score = %s, model_version = %s
             WHERE q.example_id = %s AND q.project_id = %s AND q.state = 'ready' AND {guard}""",
        [
            (priority, code, reason, score, model_number, example_id, project_id, *guard_params)
            for example_id, priority, code, reason, score in rows
        ],
    )
