"""LLM labels: storing a pre-labeling job's suggestions, and reviewers accepting, rejecting or correcting them.

An LLM's label arrives as a pending annotation of kind `llm` with its labeler, model, prompt version, confidence
and probabilities, and what the project's model predicted at the time. Accepted labels train models (provenance
`llm-accepted`, never in the holdout) and take the example out of the queue; a correction is the reviewer's own
label, a human one. Nothing is deleted: rejected labels stay for the record and for measuring trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from labeling.models import (
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

REVIEW_ACTIONS = ("accept", "reject")
ERROR_ACTION = "action must be one of: " + ", ".join(REVIEW_ACTIONS) + "."
ERROR_NO_IDS = "Give the ids of the LLM labels to review."
ERROR_TOO_MANY = "Review at most {limit:,} labels at a time."
ERROR_NOT_FOUND = "LLM label {id} is not a label of this project."
ERROR_NOT_PENDING = "LLM label {id} was already reviewed ({status})."
ERROR_UNKNOWN_LABEL = "{label!r} is not a label of this project."
ERROR_ALREADY_LABELED = "You already labeled example {example_id}; change that label on the Annotate page instead."
MAX_REVIEW = 5_000


class LLMReviewError(Exception):
    """The review cannot be applied as asked; the message says why."""


@dataclass(frozen=True)
class LLMLabel:
    """One suggestion from a labeler for one example."""

    example_id: int
    label: str
    confidence: float
    probabilities: dict[str, float]
    model_label: str | None = None
    model_confidence: float | None = None


@dataclass(frozen=True)
class Stored:
    created: int
    auto_accepted: int
    skipped: int


@dataclass(frozen=True)
class Reviewed:
    changed: int
    skipped: list[dict[str, Any]]


def llm_labels_store(
    *,
    project: Project,
    labeler: str,
    model: str,
    prompt_version: str,
    rows: Sequence[LLMLabel],
    auto_accept_at: float | None = None,
) -> Stored:
    """Save suggestions as pending LLM labels; an example this labeler already has a standing label on is skipped.

    With `auto_accept_at`, suggestions at or above that confidence are accepted at once (marked as such) and their
    examples leave the queue.
    """
    labels = dict(Label.objects.filter(project=project).values_list("name", "pk"))
    known_examples = set(
        Example.objects.filter(project=project, pk__in=[row.example_id for row in rows]).values_list("pk", flat=True)
    )
    now = timezone.now()
    annotations = []
    for row in rows:
        if row.label not in labels or row.example_id not in known_examples:
            continue
        auto = auto_accept_at is not None and row.confidence >= auto_accept_at
        annotations.append(
            Annotation(
                example_id=row.example_id,
                label_id=labels[row.label],
                labeler_name=labeler,
                labeler_model=model[:200],
                prompt_version=prompt_version[:40],
                kind=AnnotationKind.LLM,
                status=AnnotationStatus.ACCEPTED if auto else AnnotationStatus.PENDING,
                auto_accepted=auto,
                reviewed_at=now if auto else None,
                confidence=min(max(float(row.confidence), 0.0), 1.0),
                probabilities={name: round(float(value), 6) for name, value in row.probabilities.items()},
                model_label_id=labels.get(row.model_label) if row.model_label else None,
                model_confidence=row.model_confidence,
                created_at=now,
            )
        )
    with transaction.atomic():
        before = Annotation.objects.filter(example__project=project, kind=AnnotationKind.LLM).count()
        Annotation.objects.bulk_create(annotations, ignore_conflicts=True)
        created = Annotation.objects.filter(example__project=project, kind=AnnotationKind.LLM).count() - before
        accepted_ids = [a.example_id for a in annotations if a.auto_accepted]
        auto = 0
        if accepted_ids:
            auto = Annotation.objects.filter(
                example_id__in=accepted_ids, labeler_name=labeler, kind=AnnotationKind.LLM, auto_accepted=True
            ).count()
            _dequeue(accepted_ids)
    return Stored(created=created, auto_accepted=auto, skipped=len(rows) - created)


def llm_labels_review(*, project: Project, user: Any, ids: Sequence[int], action: str) -> Reviewed:
    """Accept or reject pending LLM labels of the project; ids not pending (or not the project's) are reported back."""
    if action not in REVIEW_ACTIONS:
        raise LLMReviewError(ERROR_ACTION)
    wanted = list(dict.fromkeys(int(i) for i in ids))
    if not wanted:
        raise LLMReviewError(ERROR_NO_IDS)
    if len(wanted) > MAX_REVIEW:
        raise LLMReviewError(ERROR_TOO_MANY.format(limit=MAX_REVIEW))
    now = timezone.now()
    with transaction.atomic():
        found = dict(
            Annotation.objects.select_for_update()
            .filter(pk__in=wanted, example__project=project, kind=AnnotationKind.LLM)
            .values_list("pk", "status")
        )
        pending = [pk for pk in wanted if found.get(pk) == AnnotationStatus.PENDING]
        skipped = [
            {"id": pk, "detail": ERROR_NOT_FOUND.format(id=pk)}
            if pk not in found
            else {"id": pk, "detail": ERROR_NOT_PENDING.format(id=pk, status=found[pk])}
            for pk in wanted
            if pk not in pending
        ]
        status = AnnotationStatus.ACCEPTED if action == "accept" else AnnotationStatus.REJECTED
        changed = Annotation.objects.filter(pk__in=pending, status=AnnotationStatus.PENDING).update(
            status=status, reviewed_by=user, reviewed_at=now
        )
        if action == "accept":
            _dequeue(list(Annotation.objects.filter(pk__in=pending).values_list("example_id", flat=True)))
    return Reviewed(changed=changed, skipped=skipped)


def llm_label_correct(*, project: Project, user: Any, annotation_id: int, label: str) -> Annotation:
    """Replace a pending LLM label by the reviewer's own (a human label); the LLM's is kept as rejected."""
    label_row = Label.objects.filter(project=project, name=label).first()
    if label_row is None:
        raise LLMReviewError(ERROR_UNKNOWN_LABEL.format(label=label))
    now = timezone.now()
    with transaction.atomic():
        suggestion = (
            Annotation.objects.select_for_update()
            .filter(pk=annotation_id, example__project=project, kind=AnnotationKind.LLM)
            .first()
        )
        if suggestion is None:
            raise LLMReviewError(ERROR_NOT_FOUND.format(id=annotation_id))
        if suggestion.status != AnnotationStatus.PENDING:
            raise LLMReviewError(ERROR_NOT_PENDING.format(id=annotation_id, status=suggestion.status))
        mine = Annotation.objects.filter(
            example_id=suggestion.example_id,
            author=user,
            kind=AnnotationKind.HUMAN,
            status__in=(AnnotationStatus.PENDING, AnnotationStatus.SUBMITTED, AnnotationStatus.ACCEPTED),
        ).exists()
        if mine:
            raise LLMReviewError(ERROR_ALREADY_LABELED.format(example_id=suggestion.example_id))
        Annotation.objects.filter(pk=suggestion.pk).update(
            status=AnnotationStatus.REJECTED, reviewed_by=user, reviewed_at=now
        )
        correction = Annotation.objects.create(
            example_id=suggestion.example_id,
            label=label_row,
            author=user,
            kind=AnnotationKind.HUMAN,
            status=AnnotationStatus.SUBMITTED,
            created_at=now,
        )
        # The reviewer's label counts as one of the example's slots: the queue gives it to one fewer annotator.
        slot = (
            QueueItem.objects.filter(example_id=suggestion.example_id, state=QueueState.READY)
            .exclude(reason_code=QueueReason.GOLD)
            .order_by("-slot")
            .first()
        )
        holds_one = QueueItem.objects.filter(example_id=suggestion.example_id, lease_owner=user).exists()
        if slot is not None and not holds_one:
            QueueItem.objects.filter(pk=slot.pk, state=QueueState.READY).update(
                state=QueueState.DONE, lease_owner=user, done_at=now
            )
    return correction


def _dequeue(example_ids: list[int]) -> int:
    """Take accepted examples' ready slots out of the queue (leases already handed out are left to finish)."""
    removed, _ = (
        QueueItem.objects.filter(example_id__in=example_ids, state=QueueState.READY)
        .exclude(reason_code=QueueReason.GOLD)
        .delete()
    )
    return removed
