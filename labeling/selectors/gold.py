"""Reads about gold questions: the list with how often people got each right, and the totals."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from labeling.models import LIVE_STATUSES, Annotation, AnnotationKind, AnnotationStatus, Project


def gold_list(*, project: Project) -> QuerySet[Annotation]:
    """The project's standing gold answers, newest first, each with how many people answered and how many matched."""
    answers = (
        Annotation.objects.filter(
            example_id=OuterRef("example_id"), kind=AnnotationKind.HUMAN, status__in=LIVE_STATUSES
        )
        .order_by()
        .values("example_id")
    )
    count = Count("id")
    return (
        Annotation.objects.filter(
            example__project_id=project.pk, kind=AnnotationKind.GOLD, status=AnnotationStatus.ACCEPTED
        )
        .select_related("example", "label", "author")
        .annotate(
            answered=Coalesce(Subquery(answers.annotate(n=count).values("n")), Value(0), output_field=IntegerField()),
            correct=Coalesce(
                Subquery(answers.filter(label_id=OuterRef("label_id")).annotate(n=count).values("n")),
                Value(0),
                output_field=IntegerField(),
            ),
        )
        .order_by("-created_at", "-id")
    )


def gold_summary(*, project: Project) -> dict[str, Any]:
    """Count gold questions, the answers people gave to them, and how many of those answers were right."""
    gold = Annotation.objects.filter(
        example__project_id=project.pk, kind=AnnotationKind.GOLD, status=AnnotationStatus.ACCEPTED
    )
    right = Exists(gold.filter(example_id=OuterRef("example_id"), label_id=OuterRef("label_id")))
    totals = Annotation.objects.filter(
        kind=AnnotationKind.HUMAN, status__in=LIVE_STATUSES, example_id__in=gold.values("example_id")
    ).aggregate(answers=Count("id"), correct=Count("id", filter=Q(right)))
    answers, correct = totals["answers"], totals["correct"]
    return {
        "questions": gold.count(),
        "answers": answers,
        "correct": correct,
        "accuracy_percent": round(100 * correct / answers, 1) if answers else None,
    }
