"""Labels from people: submitting (idempotent), undoing (an event, not a deletion), adjudicating, gold answers."""

from __future__ import annotations

import uuid
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
    QueueItem,
    QueueReason,
    QueueState,
)
from labeling.project_settings import labeling_settings_get

from .queue import ERROR_LEASE_NOT_FOUND, queue_fill, queue_remove_example

ERROR_UNKNOWN_LABEL = "Unknown label {label!r}; this project's labels are: {choices}."
ERROR_ALREADY_LABELED = "You already labeled this example as {label!r}; undo that label first to change it."
ERROR_LEASE_OTHER_EXAMPLE = "That lease is for example {leased}, not example {example}."
ERROR_NOTHING_TO_UNDO = "There is no label of yours to undo."
ERROR_NOT_UNDOABLE = "Only your own standing labels can be undone."
ERROR_ADJUDICATE_GOLD = (
    "Example {example_id} is a gold question: its gold answer is its final label. Remove it from the Gold page "
    "first to adjudicate it."
)
# An example has at most one final answer: a gold answer (known in advance) or a reviewer's adjudication.
_FINAL_KINDS = (AnnotationKind.GOLD, AnnotationKind.ADJUDICATED)
# Time spent on one item is capped so a label left open over lunch does not skew the medians.
MAX_SECONDS_SPENT = 600.0


class AnnotationError(Exception):
    """A label cannot be recorded as asked; the message says why and what to do."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Submitted:
    annotation: Annotation
    created: bool


def label_resolve(*, project_id: int, label: str | int | Label) -> Label:
    """Return the project's label named `label` (or with that id); AnnotationError listing the choices otherwise."""
    if isinstance(label, Label) and label.project_id == project_id:
        return label
    column = "id" if isinstance(label, int) else "name"
    key = label if isinstance(label, int) else str(label).strip()
    row = rows.fetch_one(
        f"SELECT {rows.columns(Label, 'l')} FROM {Label._meta.db_table} l WHERE l.project_id = %s AND l.{column} = %s",
        [project_id, key],
    )
    found = rows.from_row(Label, row) if row is not None else None
    if found is None:
        labels = Label.objects.filter(project_id=project_id)
        choices = ", ".join(labels.order_by("order", "name").values_list("name", flat=True))
        raise AnnotationError(
            ERROR_UNKNOWN_LABEL.format(label=label if not isinstance(label, Label) else label.name, choices=choices)
        )
    return found


def annotation_submit(
    *,
    user: Any,
    example: Example,
    label: str | int | Label,
    lease_id: uuid.UUID | str | None = None,
    now: datetime | None = None,
) -> Submitted:
    """Record the user's label for the example and close its lease; a repeat returns the first label.

    Idempotent twice over: a repeated lease id returns the annotation it made, and the database allows one
    standing human label per person and example. A lease that expired is still honoured, so no label is lost.
    """
    now = now or timezone.now()
    chosen = label_resolve(project_id=example.project_id, label=label)
    key = _lease_key(lease_id)
    for _ in range(3):
        try:
            with transaction.atomic():
                return _submit_once(user=user, example=example, label=chosen, key=key, now=now)
        except IntegrityError:
            # A concurrent duplicate of this very submit won the race; the next pass returns its result.
            continue
    raise AnnotationError(ERROR_ALREADY_LABELED.format(label=chosen.name), status=409)


def _lease_key(lease_id: uuid.UUID | str | None) -> uuid.UUID | None:
    if lease_id in (None, ""):
        return None
    try:
        return uuid.UUID(str(lease_id))
    except ValueError as exc:
        raise AnnotationError(ERROR_LEASE_NOT_FOUND, status=404) from exc


def _submit_once(*, user: Any, example: Example, label: Label, key: uuid.UUID | None, now: datetime) -> Submitted:
    earlier = _earlier_submit(user=user, example=example, key=key)
    if earlier is not None:
        return _repeat(earlier, user=user, label=label)
    item = _item_for_submit(user=user, example=example, key=key)
    seconds = None
    if item is not None and item.leased_at is not None:
        seconds = min(max((now - item.leased_at).total_seconds(), 0.0), MAX_SECONDS_SPENT)
    annotation = Annotation(
        example_id=example.pk,
        label=label,
        author_id=user.pk,
        kind=AnnotationKind.HUMAN,
        status=AnnotationStatus.SUBMITTED,
        lease_id=key,
        seconds_spent=seconds,
        created_at=now,
    )
    rows.insert(annotation)
    # The annotation row is the record of the submit (who, what, when, which lease); no separate event.
    if item is not None:
        with rows.cursor() as cursor:
            cursor.execute(
                f"UPDATE {QueueItem._meta.db_table} SET state = %s, lease_owner_id = %s, done_at = %s,"
                " lease_expires_at = NULL WHERE id = %s",
                [QueueState.DONE, user.pk, connection.ops.adapt_datetimefield_value(now), item.pk],
            )
    return Submitted(annotation=annotation, created=True)


def _earlier_submit(*, user: Any, example: Example, key: uuid.UUID | None) -> Annotation | None:
    """Return the label this submit repeats: the user's standing human label of the example, or the lease's."""
    live = ", ".join(["%s"] * len(LIVE_STATUSES))
    by_lease = " OR a.lease_id = %s" if key is not None else ""
    params: list[Any] = [example.pk, user.pk, AnnotationKind.HUMAN, *LIVE_STATUSES]
    if key is not None:
        params.append(key if connection.features.has_native_uuid_field else key.hex)
    row = rows.fetch_one(
        f"""SELECT {rows.columns(Annotation, "a")}, {rows.columns(Label, "l")}
              FROM {Annotation._meta.db_table} a JOIN {Label._meta.db_table} l ON l.id = a.label_id
             WHERE (a.example_id = %s AND a.author_id = %s AND a.kind = %s AND a.status IN ({live})){by_lease}
             ORDER BY a.id LIMIT 1""",
        params,
    )
    if row is None:
        return None
    earlier = rows.from_row(Annotation, row)
    earlier.label = rows.from_row(Label, row[rows.width(Annotation) :])
    return earlier


def _repeat(earlier: Annotation, *, user: Any, label: Label) -> Submitted:
    """Answer a repeated submit: the same label is a no-op, another label needs an undo first."""
    if earlier.author_id != user.pk:
        raise AnnotationError(ERROR_LEASE_NOT_FOUND, status=404)
    if earlier.label_id != label.pk:
        raise AnnotationError(ERROR_ALREADY_LABELED.format(label=earlier.label.name), status=409)
    return Submitted(annotation=earlier, created=False)


def _item_for_submit(*, user: Any, example: Example, key: uuid.UUID | None) -> QueueItem | None:
    """Return the queue row this label closes, locked: the lease's row, else a free slot of the example."""
    queue = QueueItem._meta.db_table
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    if key is not None:
        row = rows.fetch_one(
            f"SELECT {rows.columns(QueueItem, 'q')} FROM {queue} q WHERE q.lease_id = %s{lock}",
            [key if connection.features.has_native_uuid_field else key.hex],
        )
        if row is not None:
            item = rows.from_row(QueueItem, row)
            if item.lease_owner_id != user.pk:
                raise AnnotationError(ERROR_LEASE_NOT_FOUND, status=404)
            if item.example_id != example.pk:
                raise AnnotationError(
                    ERROR_LEASE_OTHER_EXAMPLE.format(leased=item.example_id, example=example.pk), status=409
                )
            return item
    # No lease, or one that expired and was returned: take this person's own row or a ready slot, if any.
    own = QueueItem.objects.select_for_update().filter(example_id=example.pk, lease_owner_id=user.pk).first()
    if own is not None:
        return own
    return (
        QueueItem.objects.select_for_update()
        .filter(example_id=example.pk, state=QueueState.READY)
        .exclude(reason_code=QueueReason.GOLD)
        .order_by("slot")
        .first()
    )


def annotation_undo(
    *, user: Any, project_id: int, annotation_id: int | None = None, now: datetime | None = None
) -> tuple[Annotation, QueueItem | None]:
    """Withdraw the user's last label (or the one named) and lease its item back to them to label again.

    The annotation is kept with status `withdrawn` and an `undo` event; undoing the same label twice is a no-op.
    """
    now = now or timezone.now()
    with transaction.atomic():
        annotations = Annotation.objects.select_for_update().filter(
            example__project_id=project_id, author_id=user.pk, kind=AnnotationKind.HUMAN
        )
        if annotation_id is not None:
            annotation = annotations.filter(pk=annotation_id).first()
            if annotation is None:
                raise AnnotationError(ERROR_NOT_UNDOABLE, status=404)
            if annotation.status == AnnotationStatus.WITHDRAWN:
                item = QueueItem.objects.filter(example_id=annotation.example_id, lease_owner_id=user.pk).first()
                return annotation, item
        else:
            annotation = annotations.filter(status__in=LIVE_STATUSES).order_by("-created_at", "-id").first()
            if annotation is None:
                raise AnnotationError(ERROR_NOTHING_TO_UNDO, status=404)
        if annotation.status not in LIVE_STATUSES:
            raise AnnotationError(ERROR_NOT_UNDOABLE, status=409)
        Annotation.objects.filter(pk=annotation.pk).update(status=AnnotationStatus.WITHDRAWN)
        annotation.status = AnnotationStatus.WITHDRAWN
        AnnotationEvent.objects.create(
            project_id=project_id,
            example_id=annotation.example_id,
            annotation=annotation,
            actor_id=user.pk,
            kind=AnnotationEventKind.UNDO,
            detail={"label_id": annotation.label_id},
            created_at=now,
        )
        item = (
            QueueItem.objects.select_for_update()
            .filter(example_id=annotation.example_id, lease_owner_id=user.pk)
            .first()
        )
        if item is not None:
            settings = labeling_settings_get(item.project)
            item.state = QueueState.LEASED
            item.lease_id = uuid.uuid4()
            item.leased_at = now
            item.lease_expires_at = now + timedelta(minutes=settings.lease_minutes)
            item.done_at = None
            item.save(update_fields=["state", "lease_id", "leased_at", "lease_expires_at", "done_at"])
    return annotation, item


def _settle(
    *, example: Example, label: Label, user: Any, kind: str, event: str, note: str = "", now: datetime
) -> Annotation:
    """Record the example's one final answer (a gold answer or an adjudication), superseding the one before."""
    Annotation.objects.filter(example_id=example.pk, kind__in=_FINAL_KINDS, status=AnnotationStatus.ACCEPTED).update(
        status=AnnotationStatus.SUPERSEDED
    )
    annotation = Annotation.objects.create(
        example_id=example.pk,
        label=label,
        author_id=user.pk,
        kind=kind,
        status=AnnotationStatus.ACCEPTED,
        created_at=now,
    )
    AnnotationEvent.objects.create(
        project_id=example.project_id,
        example_id=example.pk,
        annotation=annotation,
        actor_id=user.pk,
        kind=event,
        detail={"label": label.name, "note": note} if note else {"label": label.name},
        created_at=now,
    )
    return annotation


def annotation_adjudicate(
    *, user: Any, example: Example, label: str | int | Label, note: str = "", now: datetime | None = None
) -> Annotation:
    """Settle a conflict: the reviewer's label becomes the example's final label (kind `adjudicated`)."""
    chosen = label_resolve(project_id=example.project_id, label=label)
    with transaction.atomic():
        gold = Annotation.objects.filter(
            example_id=example.pk, kind=AnnotationKind.GOLD, status=AnnotationStatus.ACCEPTED
        ).select_for_update()
        if gold.exists():
            raise AnnotationError(ERROR_ADJUDICATE_GOLD.format(example_id=example.pk), status=409)
        annotation = _settle(
            example=example,
            label=chosen,
            user=user,
            kind=AnnotationKind.ADJUDICATED,
            event=AnnotationEventKind.ADJUDICATE,
            note=note.strip()[:500],
            now=now or timezone.now(),
        )
        queue_remove_example(example_id=example.pk)
    return annotation


def gold_set(*, user: Any, example: Example, label: str | int | Label, now: datetime | None = None) -> Annotation:
    """Make the example a gold question with a known answer; it leaves the regular queue.

    The gold answer becomes the example's final label: an earlier adjudication is kept as superseded.
    """
    chosen = label_resolve(project_id=example.project_id, label=label)
    with transaction.atomic():
        annotation = _settle(
            example=example,
            label=chosen,
            user=user,
            kind=AnnotationKind.GOLD,
            event=AnnotationEventKind.GOLD_SET,
            now=now or timezone.now(),
        )
        queue_remove_example(example_id=example.pk)
    return annotation


def gold_unset(*, user: Any, example: Example, now: datetime | None = None) -> int:
    """Retire the example's gold answer (kept as superseded) and queue it again unless it has a settled label.

    Return how many gold answers were retired.
    """
    now = now or timezone.now()
    with transaction.atomic():
        retired = Annotation.objects.filter(
            example_id=example.pk, kind=AnnotationKind.GOLD, status=AnnotationStatus.ACCEPTED
        ).update(status=AnnotationStatus.SUPERSEDED)
        if retired:
            queue_fill(project=example.project, example_id=example.pk)
            AnnotationEvent.objects.create(
                project_id=example.project_id,
                example_id=example.pk,
                actor_id=user.pk,
                kind=AnnotationEventKind.GOLD_UNSET,
                created_at=now,
            )
    return retired
