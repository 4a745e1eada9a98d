"""Reads about the queue: progress, what it holds and why, who holds leases, and a person's count today."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Exists, F, OuterRef, QuerySet
from django.utils import timezone

from labeling.models import (
    LIVE_STATUSES,
    Annotation,
    AnnotationKind,
    AnnotationStatus,
    Example,
    Label,
    Project,
    QueueItem,
    QueueReason,
    QueueState,
)

# Counting a queue of a million slots costs tens of milliseconds; above this size the counts shown with
# every label are reused for a few seconds per web process instead of being counted on every request.
PROGRESS_EXACT_BELOW = 20_000
PROGRESS_CACHE_SECONDS = 5


def queue_progress(*, project: Project) -> dict[str, int]:
    """Count queue slots by state: `done` of `total` is the project's labeling progress.

    Exact for queues under PROGRESS_EXACT_BELOW slots; larger ones may be up to PROGRESS_CACHE_SECONDS old.
    """
    key = f"flywheel:queue-progress:{project.pk}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    counts = _queue_progress_count(project=project)
    if counts["total"] >= PROGRESS_EXACT_BELOW:
        cache.set(key, counts, PROGRESS_CACHE_SECONDS)
    return counts


def _queue_progress_count(*, project: Project) -> dict[str, int]:
    counts = dict.fromkeys(QueueState.values, 0)
    rows = QueueItem.objects.filter(project_id=project.pk).exclude(reason_code=QueueReason.GOLD)
    for row in rows.order_by().values("state").annotate(n=Count("id")):
        counts[row["state"]] = row["n"]
    total = sum(counts.values())
    return {**counts, "total": total, "remaining": counts[QueueState.READY] + counts[QueueState.LEASED]}


def annotation_count_today(*, project: Project, user: Any, now: datetime | None = None) -> int:
    """Count the user's standing labels in this project since local midnight."""
    now = timezone.localtime(now or timezone.now())
    midnight = timezone.make_aware(datetime.combine(now.date(), time.min), now.tzinfo)
    return Annotation.objects.filter(
        author_id=user.pk,
        created_at__gte=midnight,
        kind=AnnotationKind.HUMAN,
        status__in=LIVE_STATUSES,
        example__project_id=project.pk,
    ).count()


def queue_composition(*, project: Project) -> list[dict[str, Any]]:
    """Return one row per reason: how many slots are ready, leased and done, with the reason's label."""
    table: dict[str, dict[str, Any]] = {}
    rows = QueueItem.objects.filter(project_id=project.pk).order_by().values("reason_code", "state")
    for row in rows.annotate(n=Count("id")):
        entry = table.setdefault(
            row["reason_code"],
            {"reason_code": row["reason_code"], "label": QueueReason(row["reason_code"]).label, "total": 0}
            | dict.fromkeys(QueueState.values, 0),
        )
        entry[row["state"]] = row["n"]
        entry["total"] += row["n"]
    return sorted(table.values(), key=lambda entry: (-entry["total"], entry["reason_code"]))


def lease_list(*, project: Project) -> QuerySet[QueueItem]:
    """Leases held now, soonest to expire first, with their holder and example."""
    return (
        QueueItem.objects.filter(project_id=project.pk, state=QueueState.LEASED)
        .select_related("lease_owner", "example")
        .order_by("lease_expires_at")
    )


def queue_item_labels(*, project: Project) -> list[Label]:
    """The labels an annotator chooses from, in display order, each with the key that applies it."""
    labels = list(Label.objects.filter(project_id=project.pk).order_by("order", "name"))
    used = {label.shortcut for label in labels if label.shortcut}
    digits = (str(number) for number in range(1, 10))
    for label in labels:
        if not label.shortcut:
            label.key = next((digit for digit in digits if digit not in used), "")
        else:
            label.key = label.shortcut
    return labels


def unqueued_example_count(*, project: Project) -> int:
    """Count examples that `queue_fill` would queue: no queue row and no settled (imported, gold, adjudicated) label."""
    settled = Annotation.objects.filter(
        example_id=OuterRef("pk"),
        kind__in=(AnnotationKind.IMPORTED, AnnotationKind.GOLD, AnnotationKind.ADJUDICATED),
        status__in=LIVE_STATUSES,
    )
    queued = QueueItem.objects.filter(example_id=OuterRef("pk"))
    return Example.objects.filter(project_id=project.pk).exclude(Exists(queued)).exclude(Exists(settled)).count()


# Suggestions from an LLM count while they wait for review or after they were accepted.
_LLM_SUGGESTION_STATUSES = (AnnotationStatus.PENDING, AnnotationStatus.ACCEPTED)


@dataclass(frozen=True)
class Suggestion:
    label: Label
    confidence: float | None
    source: str


def queue_item_suggestion_get(*, item: QueueItem) -> Suggestion | None:
    """Return the item's ranked suggestion, else the example's most confident standing LLM label, else None."""
    if item.suggested_label_id is not None:
        source = item.suggestion_source or (f"model v{item.model_version}" if item.model_version else "the model")
        return Suggestion(label=item.suggested_label, confidence=item.suggested_confidence, source=source)
    llm = (
        Annotation.objects.select_related("label")
        .filter(example_id=item.example_id, kind=AnnotationKind.LLM, status__in=_LLM_SUGGESTION_STATUSES)
        .order_by(F("confidence").desc(nulls_last=True), "-id")
        .first()
    )
    if llm is None:
        return None
    return Suggestion(label=llm.label, confidence=llm.confidence, source=llm.labeler_name or "an LLM")
