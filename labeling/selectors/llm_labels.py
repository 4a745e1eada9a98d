"""Reads of LLM labels for the review desk and the API: filters by status, label, confidence and model agreement."""

from __future__ import annotations

from django.db.models import Count, F, QuerySet

from labeling.models import Annotation, AnnotationKind, Project

AGREEMENT_CHOICES = ("agree", "disagree", "unknown")
STATUS_CHOICES = ("pending", "accepted", "rejected")
ORDER_CHOICES = ("confidence", "-confidence", "id", "-id")
ERROR_FILTER_CHOICE = "{name} must be one of: {choices}."


def llm_label_list(
    *,
    project: Project,
    status: str | None = "pending",
    label: str | None = None,
    labeler: str | None = None,
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    agreement: str | None = None,
    order: str = "-confidence",
) -> QuerySet[Annotation]:
    """The project's LLM labels with their example, label and the model's prediction; ValueError for a bad filter."""
    for name, value, choices in (
        ("status", status, STATUS_CHOICES),
        ("agreement", agreement, AGREEMENT_CHOICES),
        ("order", order, ORDER_CHOICES),
    ):
        if value not in (None, "") and value not in choices:
            raise ValueError(ERROR_FILTER_CHOICE.format(name=name, choices=", ".join(choices)))
    rows = Annotation.objects.filter(example__project=project, kind=AnnotationKind.LLM).select_related(
        "example", "label", "model_label", "reviewed_by"
    )
    if status:
        rows = rows.filter(status=status)
    if label:
        rows = rows.filter(label__name=label)
    if labeler:
        rows = rows.filter(labeler_name=labeler)
    if min_confidence is not None:
        rows = rows.filter(confidence__gte=min_confidence)
    if max_confidence is not None:
        rows = rows.filter(confidence__lte=max_confidence)
    if agreement == "agree":
        rows = rows.filter(model_label_id=F("label_id"))
    elif agreement == "disagree":
        rows = rows.filter(model_label__isnull=False).exclude(model_label_id=F("label_id"))
    elif agreement == "unknown":
        rows = rows.filter(model_label__isnull=True)
    return rows.order_by(order, "id")


def llm_label_counts(*, project: Project) -> dict[str, int]:
    """Count the project's LLM labels by status, plus how many were auto-accepted."""
    rows = Annotation.objects.filter(example__project=project, kind=AnnotationKind.LLM)
    counts = dict(rows.values_list("status").order_by().annotate(n=Count("id")))
    counts["auto_accepted"] = rows.filter(auto_accepted=True).count()
    counts["disagree_pending"] = (
        rows.filter(status="pending", model_label__isnull=False).exclude(model_label_id=F("label_id")).count()
    )
    return counts


def llm_labelers(*, project: Project) -> list[str]:
    """Names of the labelers that labeled in this project."""
    return list(
        Annotation.objects.filter(example__project=project, kind=AnnotationKind.LLM)
        .values_list("labeler_name", flat=True)
        .order_by("labeler_name")
        .distinct()
    )


__all__ = ["AGREEMENT_CHOICES", "ORDER_CHOICES", "STATUS_CHOICES", "llm_label_counts", "llm_label_list", "llm_labelers"]
