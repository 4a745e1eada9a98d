"""LLM labels in the JSON API: list them by status and filters, accept or reject them in bulk, correct one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from labeling import selectors, services
from labeling.models import ProjectRole

router = Router(tags=["llm labels"])

MAX_PAGE = 1_000


class ErrorOut(Schema):
    detail: str


class LLMLabelOut(Schema):
    id: int
    example_id: int
    text: str
    label: str
    confidence: float | None
    labeler: str
    model: str
    prompt_version: str
    probabilities: dict[str, float]
    model_label: str | None = Field(None, description="What the project's model predicted when the LLM labeled it.")
    model_confidence: float | None
    status: str
    auto_accepted: bool
    reviewed_by: str | None
    created_at: datetime


class LLMLabelFilters(Schema):
    status: str | None = Field("pending", description="pending, accepted or rejected; empty for all.")
    label: str | None = None
    labeler: str | None = None
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    max_confidence: float | None = Field(None, ge=0.0, le=1.0)
    agreement: str | None = Field(None, description="agree, disagree or unknown: the LLM versus the model.")
    order: str = Field("-confidence", description="confidence, -confidence, id or -id.")
    limit: int = Field(100, ge=1, le=MAX_PAGE)
    offset: int = Field(0, ge=0)


class ReviewIn(Schema):
    ids: list[int] | None = Field(None, description="LLM labels to accept or reject, with `action`.")
    action: str | None = Field(None, description="accept or reject.")
    id: int | None = Field(None, description="One LLM label to correct, with `label`.")
    label: str | None = Field(None, description="The right label for `id`: it becomes your own (human) label.")


class ReviewOut(Schema):
    changed: int
    skipped: list[dict[str, Any]] = Field(default_factory=list, description="Ids not changed, each with why.")
    correction_id: int | None = Field(None, description="The id of your label, when correcting.")


def llm_label_out(annotation: Any) -> dict[str, Any]:
    return {
        "id": annotation.pk,
        "example_id": annotation.example_id,
        "text": annotation.example.text,
        "label": annotation.label.name,
        "confidence": annotation.confidence,
        "labeler": annotation.labeler_name,
        "model": annotation.labeler_model,
        "prompt_version": annotation.prompt_version,
        "probabilities": annotation.probabilities or {},
        "model_label": annotation.model_label.name if annotation.model_label_id else None,
        "model_confidence": annotation.model_confidence,
        "status": annotation.status,
        "auto_accepted": annotation.auto_accepted,
        "reviewed_by": annotation.reviewed_by.get_username() if annotation.reviewed_by_id else None,
        "created_at": annotation.created_at,
    }


@router.get(
    "/projects/{slug}/llm-labels",
    response={200: list[LLMLabelOut], 400: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    summary="List the project's LLM labels (reviewers): pending by default, filtered by label, confidence, agreement",
)
def llm_label_list(request: HttpRequest, slug: str, filters: Query[LLMLabelFilters]) -> Status[Any]:
    project, _ = selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER)
    try:
        rows = selectors.llm_label_list(
            project=project,
            status=filters.status or None,
            label=filters.label,
            labeler=filters.labeler,
            min_confidence=filters.min_confidence,
            max_confidence=filters.max_confidence,
            agreement=filters.agreement or None,
            order=filters.order,
        )
    except ValueError as exc:
        return Status(400, {"detail": str(exc)})
    page = rows[filters.offset : filters.offset + filters.limit]
    return Status(200, [llm_label_out(annotation) for annotation in page])


@router.post(
    "/projects/{slug}/llm-labels/review",
    response={200: ReviewOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    summary="Accept or reject LLM labels in bulk ({ids, action}), or correct one ({id, label}) (reviewers)",
)
def llm_label_review(request: HttpRequest, slug: str, payload: ReviewIn) -> Status[Any]:
    project, _ = selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER)
    try:
        if payload.id is not None or payload.label is not None:
            if payload.id is None or not payload.label or payload.ids or payload.action:
                return Status(400, {"detail": 'To correct one label send exactly {"id", "label"}.'})
            correction = services.llm_label_correct(
                project=project, user=request.auth, annotation_id=payload.id, label=payload.label
            )
            return Status(200, {"changed": 1, "skipped": [], "correction_id": correction.pk})
        result = services.llm_labels_review(
            project=project, user=request.auth, ids=payload.ids or [], action=payload.action or ""
        )
    except services.LLMReviewError as exc:
        return Status(400, {"detail": str(exc)})
    return Status(200, {"changed": result.changed, "skipped": result.skipped, "correction_id": None})
