"""The labeling queue: filling it, claiming the next item atomically, leases, heartbeats, skips and expiry.

Ranking happens elsewhere, in background jobs that write `QueueItem.priority` and `reason`. Claiming
reads the top ready row and leases it in one statement; on PostgreSQL concurrent claimers skip each
other's locked rows (`FOR UPDATE SKIP LOCKED`), on SQLite the immediate transaction serializes them.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from labeling import rows
from labeling.models import (
    LIVE_STATUSES,
    Annotation,
    AnnotationEvent,
    AnnotationEventKind,
    AnnotationKind,
    AnnotationStatus,
    Example,
    Label,
    Project,
    QueueItem,
    QueueReason,
    QueueSkip,
    QueueState,
)
from labeling.project_settings import LabelingSettings, labeling_settings_get

ERROR_LEASE_NOT_FOUND = "No such lease: it was released, it expired and went to someone else, or it is not yours."
REASON_EXPLORATION = "Exploration: picked at random, so the model keeps seeing the real mix of examples."
# Gold items are shown with a truthful reason that does not give away that their answer is known.
REASON_GOLD = "Picked at random from the project's examples."
CLAIM_ATTEMPTS = 5
# Labels that say an example needs no more queue slots.
_SETTLED_KINDS = (AnnotationKind.IMPORTED, AnnotationKind.GOLD, AnnotationKind.ADJUDICATED)


class LeaseError(Exception):
    """The lease does not exist, is not the caller's, or is no longer held."""


@dataclass(frozen=True)
class Claim:
    """A leased item handed to one annotator."""

    item: QueueItem
    resumed: bool
    # The project's label names in display order, when the claim's statement brought them along.
    labels: list[str] | None = None


def _live_status_sql() -> str:
    return ", ".join(f"'{status}'" for status in LIVE_STATUSES)


def _claim_sql(*, skipped: bool, curriculum: bool = False, wait: bool = False, fetch: bool = False) -> str:
    """Return the claim statement: lease the best ready row this user may take, in one UPDATE.

    Pass one skips examples the user skipped; pass two, used only when pass one finds nothing, serves the
    skipped ones, oldest skip first, so a skipped item comes back to its annotator last. `curriculum` limits
    pass one to curriculum items, easiest (highest score) first, for an annotator's first labels. `wait` locks
    without skipping: the last resort when every ready row was locked, as during a queue rebuild's commit.
    `fetch` (PostgreSQL) returns the leased row with its example and the project's label names in the same
    statement, instead of its id alone.
    """
    queue = QueueItem._meta.db_table
    annotation = Annotation._meta.db_table
    skip = QueueSkip._meta.db_table
    lock = ""
    if connection.features.has_select_for_update_skip_locked:
        lock = "FOR UPDATE OF q" if wait else "FOR UPDATE OF q SKIP LOCKED"
    # `OFFSET 0` keeps each NOT EXISTS a per-candidate probe of an (example, user) index on PostgreSQL. Without
    # it the planner may choose an anti-join that reads all of this user's queue rows and labels on every claim
    # (seen after a bulk queue_fill, while statistics predate the user's work), so a claim would cost more the
    # more the annotator has labeled.
    fence = "OFFSET 0" if connection.vendor == "postgresql" else ""
    if skipped:
        source = f"{queue} q JOIN {skip} s ON s.example_id = q.example_id AND s.user_id = %(user)s"
        order = "s.created_at, q.priority DESC, q.id"
        skip_filter = ""
    else:
        source = f"{queue} q"
        order = "q.priority DESC, q.id"
        skip_filter = (
            f"AND NOT EXISTS (SELECT 1 FROM {skip} s WHERE s.example_id = q.example_id AND s.user_id = %(user)s"
            f" {fence})"
        )
        if curriculum:
            skip_filter += f" AND q.reason_code = '{QueueReason.CURRICULUM}'"
            order = "q.score DESC, q.id"
    update = f"""
        UPDATE {queue}
           SET state = 'leased', lease_owner_id = %(user)s, lease_id = %(lease)s,
               leased_at = %(now)s, lease_expires_at = %(expires)s
         WHERE id = (
            SELECT q.id FROM {source}
             WHERE q.project_id = %(project)s AND q.state = 'ready'
               AND NOT EXISTS (
                   SELECT 1 FROM {queue} o WHERE o.example_id = q.example_id AND o.lease_owner_id = %(user)s
                   {fence})
               AND NOT EXISTS (
                   SELECT 1 FROM {annotation} a
                    WHERE a.example_id = q.example_id AND a.author_id = %(user)s
                      AND a.status IN ({_live_status_sql()})
                   {fence})
               {skip_filter}
             ORDER BY {order}
             LIMIT 1 {lock})"""
    if not fetch:
        return f"{update}\n        RETURNING id"
    # The CTE's RETURNING carries the row as updated (a read of the table here would see it as it was before).
    returned = ", ".join(f'"{field.column}"' for field in QueueItem._meta.concrete_fields)
    label = Label._meta.db_table
    return f"""
        WITH leased AS ({update}
        RETURNING {returned})
        SELECT leased.*, {rows.columns(Example, "e")},
               ARRAY(SELECT l.name FROM {label} l WHERE l.project_id = leased.project_id ORDER BY l."order", l.name)
          FROM leased JOIN {Example._meta.db_table} e ON e.id = leased.example_id"""


def _lease_params(*, user: Any, now: datetime, settings: LabelingSettings) -> dict[str, Any]:
    lease = uuid.uuid4()
    return {
        "user": user.pk,
        "lease": lease if connection.features.has_native_uuid_field else lease.hex,
        "lease_uuid": lease,
        "now": _db_time(now),
        "expires": _db_time(now + timedelta(minutes=settings.lease_minutes)),
        "expires_at": now + timedelta(minutes=settings.lease_minutes),
    }


def _db_time(value: datetime) -> Any:
    """Adapt a datetime for a raw statement the way the ORM would (naive UTC text on SQLite)."""
    return connection.ops.adapt_datetimefield_value(value)


def queue_claim_next(*, project: Project, user: Any, now: datetime | None = None) -> Claim | None:
    """Lease the next item for this user, or None when nothing is left that they may label.

    A lease the user still holds is handed back first (a reloaded page or a retried claim gets the same
    item). Never leases an item to two people, nor to someone who labeled or holds another slot of its
    example; the database's unique (example, owner) constraint backs that up under any race.
    """
    now = now or timezone.now()
    settings = labeling_settings_get(project)
    # Inside a caller's transaction the claim's commit is the caller's, which may hold labels: leave it alone.
    outermost = not connection.in_atomic_block
    for _ in range(CLAIM_ATTEMPTS):
        try:
            with transaction.atomic():
                claim = _claim_once(project=project, user=user, now=now, settings=settings, no_flush=outermost)
        except IntegrityError:
            # The same user claimed another slot of the same example at the same moment (two tabs): try again.
            continue
        if claim is not None:
            return claim
        if queue_leases_expire(now=now, project=project) == 0:
            return None
    return None


def _claim_once(
    *, project: Project, user: Any, now: datetime, settings: LabelingSettings, no_flush: bool
) -> Claim | None:
    # Most claims find no held lease: probe for one with a bare statement before loading any row.
    held_id = _held_lease_id(project=project, user=user, now=now, no_flush=no_flush)
    if held_id is not None:
        held = _item_with_example(held_id)
        held.lease_expires_at = now + timedelta(minutes=settings.lease_minutes)
        QueueItem.objects.filter(pk=held.pk).update(lease_expires_at=held.lease_expires_at)
        return Claim(item=held, resumed=True)
    if settings.gold_rate > 0 and random.random() < settings.gold_rate:
        gold = _claim_gold(project=project, user=user, now=now, settings=settings)
        if gold is not None:
            return Claim(item=gold, resumed=False)
    params = {**_lease_params(user=user, now=now, settings=settings), "project": project.pk}
    fetch = connection.vendor == "postgresql"
    passes = [_claim_sql(skipped=False, fetch=fetch), _claim_sql(skipped=True, fetch=fetch)]
    if settings.curriculum_items and _labels_by_user(project=project, user=user, limit=settings.curriculum_items) < (
        settings.curriculum_items
    ):
        passes.insert(0, _claim_sql(skipped=False, curriculum=True, fetch=fetch))
    if connection.features.has_select_for_update_skip_locked:
        passes.append(_claim_sql(skipped=False, wait=True, fetch=fetch))
    with rows.cursor() as cursor:
        for sql in passes:
            cursor.execute(sql, params)
            row = cursor.fetchone()
            if row is not None:
                if fetch:
                    return Claim(item=_item_from_row(row), resumed=False, labels=list(row[-1]))
                return Claim(item=_item_with_example(row[0]), resumed=False)
    return None


def _labels_by_user(*, project: Project, user: Any, limit: int) -> int:
    """Count the user's own labels in the project, stopping at `limit` (all the curriculum needs to know)."""
    sql = f"""
        SELECT COUNT(*) FROM (
            SELECT 1 FROM {Annotation._meta.db_table} a JOIN {Example._meta.db_table} e ON e.id = a.example_id
             WHERE a.author_id = %s AND e.project_id = %s AND a.kind = %s LIMIT %s) t"""
    with rows.cursor() as cursor:
        cursor.execute(sql, [user.pk, project.pk, AnnotationKind.HUMAN, limit])
        return int(cursor.fetchone()[0])


def _item_with_example(item_id: int) -> QueueItem:
    """Load a queue item with its example in one statement."""
    row = rows.fetch_one(
        f"""SELECT {rows.columns(QueueItem, "q")}, {rows.columns(Example, "e")}
              FROM {QueueItem._meta.db_table} q JOIN {Example._meta.db_table} e ON e.id = q.example_id
             WHERE q.id = %s""",
        [item_id],
    )
    return _item_from_row(row)


def _item_from_row(row: Sequence[Any]) -> QueueItem:
    """Build a queue item and its example from a row of the item's columns followed by the example's."""
    item = rows.from_row(QueueItem, row)
    item.example = rows.from_row(Example, row[rows.width(QueueItem) :])
    return item


def _held_lease_id(*, project: Project, user: Any, now: datetime, no_flush: bool = False) -> int | None:
    """Return the id of the newest unexpired lease the user holds in the project, or None.

    With `no_flush` on PostgreSQL the same statement lets this transaction's commit return before its WAL
    reaches disk. A lease is the one write of a claim that may be lost safely: should the database server crash
    within the fraction of a second before the flush, the item is simply ready again and no label is lost.
    Labels (the submit) still wait for the flush. `set_config(..., true)` is `SET LOCAL`: it lasts until the
    outermost transaction ends, so only a transaction of the claim's own asks for it.
    """
    probe = f"""
        SELECT id FROM {QueueItem._meta.db_table}
         WHERE lease_owner_id = %s AND state = 'leased' AND project_id = %s AND lease_expires_at > %s
         ORDER BY leased_at DESC, id DESC LIMIT 1"""
    params = [user.pk, project.pk, _db_time(now)]
    with rows.cursor() as cursor:
        if no_flush and connection.vendor == "postgresql":
            cursor.execute(f"SELECT set_config('synchronous_commit', 'off', true), ({probe})", params)
            return cursor.fetchone()[1]
        cursor.execute(probe, params)
        row = cursor.fetchone()
    return row[0] if row else None


def _gold_candidates_sql() -> str:
    """Gold examples of the project this user has not answered, been shown or skipped (up to 200).

    A bare statement, prepared on PostgreSQL: a claim draws gold at the project's rate, so this runs on a
    share of all claims. Each NOT EXISTS probes the (example, user) indexes for one gold example; the
    `OFFSET 0` fences keep the planner from reading everything this annotator has labeled instead.
    """
    fence = "OFFSET 0" if connection.vendor == "postgresql" else ""
    return f"""
        SELECT a.example_id
          FROM {Annotation._meta.db_table} a JOIN {Example._meta.db_table} e ON e.id = a.example_id
         WHERE e.project_id = %(project)s AND a.kind = %(kind)s AND a.status = %(accepted)s
           AND NOT EXISTS (
               SELECT 1 FROM {Annotation._meta.db_table} b
                WHERE b.example_id = a.example_id AND b.author_id = %(user)s
                  AND b.status IN ({_live_status_sql()}) {fence})
           AND NOT EXISTS (
               SELECT 1 FROM {QueueItem._meta.db_table} o
                WHERE o.example_id = a.example_id AND o.lease_owner_id = %(user)s {fence})
           AND NOT EXISTS (
               SELECT 1 FROM {QueueSkip._meta.db_table} s
                WHERE s.example_id = a.example_id AND s.user_id = %(user)s {fence})
         LIMIT 200"""


def _claim_gold(*, project: Project, user: Any, now: datetime, settings: LabelingSettings) -> QueueItem | None:
    """Lease a gold example this user has not answered, made for them now; None when there is none."""
    with rows.cursor() as cursor:
        cursor.execute(
            _gold_candidates_sql(),
            {
                "project": project.pk,
                "user": user.pk,
                "kind": AnnotationKind.GOLD,
                "accepted": AnnotationStatus.ACCEPTED,
            },
        )
        candidates = [row[0] for row in cursor.fetchall()]
    if not candidates:
        return None
    params = _lease_params(user=user, now=now, settings=settings)
    item = QueueItem.objects.create(
        project_id=project.pk,
        example_id=random.choice(candidates),
        slot=0,
        priority=0.0,
        reason_code=QueueReason.GOLD,
        reason=REASON_GOLD,
        state=QueueState.LEASED,
        lease_id=params["lease_uuid"],
        lease_owner_id=user.pk,
        leased_at=now,
        lease_expires_at=params["expires_at"],
    )
    return QueueItem.objects.select_related("example").get(pk=item.pk)


def queue_lease_get(*, user: Any, lease_id: uuid.UUID | str) -> QueueItem:
    """Return the item the user holds under this lease (any state); LeaseError when it is not theirs."""
    try:
        key = uuid.UUID(str(lease_id))
    except ValueError as exc:
        raise LeaseError(ERROR_LEASE_NOT_FOUND) from exc
    item = QueueItem.objects.select_related("example", "project").filter(lease_id=key).first()
    if item is None or item.lease_owner_id != user.pk:
        raise LeaseError(ERROR_LEASE_NOT_FOUND)
    return item


def queue_lease_extend(*, user: Any, lease_id: uuid.UUID | str, now: datetime | None = None) -> QueueItem:
    """Push the lease's expiry a full term ahead (the open page's heartbeat); LeaseError when no longer held."""
    now = now or timezone.now()
    item = queue_lease_get(user=user, lease_id=lease_id)
    settings = labeling_settings_get(item.project)
    expires = now + timedelta(minutes=settings.lease_minutes)
    updated = QueueItem.objects.filter(
        pk=item.pk, lease_id=item.lease_id, lease_owner_id=user.pk, state=QueueState.LEASED
    ).update(lease_expires_at=expires)
    if not updated:
        raise LeaseError(ERROR_LEASE_NOT_FOUND)
    item.lease_expires_at = expires
    return item


def queue_release(*, user: Any, lease_id: uuid.UUID | str, now: datetime | None = None) -> QueueItem:
    """Give a leased item back (skip): it returns to the queue, at the back for this annotator only."""
    now = now or timezone.now()
    with transaction.atomic():
        item = queue_lease_get(user=user, lease_id=lease_id)
        if item.state != QueueState.LEASED:
            raise LeaseError(ERROR_LEASE_NOT_FOUND)
        QueueSkip.objects.update_or_create(example_id=item.example_id, user_id=user.pk, defaults={"created_at": now})
        AnnotationEvent.objects.create(
            project_id=item.project_id,
            example_id=item.example_id,
            actor_id=user.pk,
            kind=AnnotationEventKind.SKIP,
            detail={"reason_code": item.reason_code},
            created_at=now,
        )
        if item.reason_code == QueueReason.GOLD:
            QueueItem.objects.filter(pk=item.pk, state=QueueState.LEASED).delete()
        else:
            QueueItem.objects.filter(pk=item.pk, state=QueueState.LEASED).update(**_READY)
        item.state = QueueState.READY
    return item


_READY = {"state": QueueState.READY, "lease_owner": None, "lease_id": None, "leased_at": None, "lease_expires_at": None}


def queue_leases_expire(*, now: datetime | None = None, project: Project | None = None) -> int:
    """Return expired leases to the queue (gold items, made for one person, are dropped); return how many."""
    now = now or timezone.now()
    expired = QueueItem.objects.filter(state=QueueState.LEASED, lease_expires_at__lte=now)
    if project is not None:
        expired = expired.filter(project_id=project.pk)
    with transaction.atomic():
        gold, _ = expired.filter(reason_code=QueueReason.GOLD).delete()
        returned = expired.exclude(reason_code=QueueReason.GOLD).update(**_READY)
    return gold + returned


def queue_fill(*, project: Project, import_job_id: int | None = None, example_id: int | None = None) -> int:
    """Queue every example that has no queue row and no settled label, in random (exploration) order.

    Runs as one INSERT … SELECT; each example gets `overlap` slots sharing one priority. Return the number
    of examples queued.
    """
    settings = labeling_settings_get(project)
    queue = QueueItem._meta.db_table
    example = Example._meta.db_table
    annotation = Annotation._meta.db_table
    settled = ", ".join(f"'{kind}'" for kind in _SETTLED_KINDS)
    if connection.vendor == "postgresql":
        priority = "random()"
        conflict = "ON CONFLICT DO NOTHING"
    else:
        priority = "(abs(random()) / 9223372036854775808.0)"
        conflict = "ON CONFLICT DO NOTHING"
    job_filter = "AND e.import_job_id = %(job)s" if import_job_id is not None else ""
    if example_id is not None:
        job_filter += " AND e.id = %(example)s"
    sql = f"""
        INSERT INTO {queue} (project_id, example_id, slot, priority, reason_code, reason, state,
                             suggestion_source, created_at)
        SELECT e.project_id, e.id, 0, {priority}, %(code)s, %(reason)s, 'ready', '', %(now)s
          FROM {example} e
         WHERE e.project_id = %(project)s {job_filter}
           AND NOT EXISTS (SELECT 1 FROM {queue} q WHERE q.example_id = e.id)
           AND NOT EXISTS (
               SELECT 1 FROM {annotation} a
                WHERE a.example_id = e.id AND a.kind IN ({settled}) AND a.status IN ({_live_status_sql()}))
        {conflict}"""
    params = {
        "code": QueueReason.EXPLORATION,
        "reason": REASON_EXPLORATION,
        "now": _db_time(timezone.now()),
        "project": project.pk,
        "job": import_job_id,
        "example": example_id,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        added = max(cursor.rowcount, 0)
        _slots_sync(project=project, overlap=settings.overlap)
    return added


def queue_overlap_sync(*, project: Project) -> int:
    """Match every queued example's slots to the project's overlap; return rows added (or removed, negative)."""
    settings = labeling_settings_get(project)
    with transaction.atomic():
        return _slots_sync(project=project, overlap=settings.overlap)


def _slots_sync(*, project: Project, overlap: int) -> int:
    """Add slots 1..overlap-1 next to each slot-0 row (same priority and reason); drop ready slots beyond it."""
    queue = QueueItem._meta.db_table
    removed, _ = (
        QueueItem.objects.filter(project_id=project.pk, state=QueueState.READY, slot__gte=overlap)
        .exclude(reason_code__in=(QueueReason.GOLD, QueueReason.LABEL_ERROR))
        .delete()
    )
    added = 0
    with connection.cursor() as cursor:
        for slot in range(1, overlap):
            cursor.execute(
                f"""
                INSERT INTO {queue} (project_id, example_id, slot, priority, reason_code, reason, model_version,
                                     suggested_label_id, suggested_confidence, suggestion_source, state, created_at)
                SELECT q.project_id, q.example_id, %(slot)s, q.priority, q.reason_code, q.reason, q.model_version,
                       q.suggested_label_id, q.suggested_confidence, q.suggestion_source, 'ready', %(now)s
                  FROM {queue} q
                 WHERE q.project_id = %(project)s AND q.slot = 0 AND q.reason_code NOT IN ('gold', 'label_error')
                   AND NOT EXISTS (SELECT 1 FROM {queue} o WHERE o.example_id = q.example_id AND o.slot = %(slot)s)
                ON CONFLICT DO NOTHING""",
                {"slot": slot, "now": _db_time(timezone.now()), "project": project.pk},
            )
            added += max(cursor.rowcount, 0)
    return added - removed


def queue_remove_example(*, example_id: int) -> int:
    """Take an example's ready slots out of the queue (it became gold or was settled); leases are left alone."""
    removed, _ = (
        QueueItem.objects.filter(example_id=example_id, state=QueueState.READY)
        .exclude(reason_code=QueueReason.GOLD)
        .delete()
    )
    return removed
