"""The labeling queue in the JSON API: claim the next item, label it, release or extend its lease, undo.

A client loops claim → submit. Claims answer 204 when nothing is left for the caller; a label sent twice
(same lease) answers 200 with the first annotation instead of creating a second one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.http import Http404, HttpRequest
from ninja import Field, Router, Schema, Status

from labeling import selectors, services
from labeling.models import ProjectRole, QueueItem

router = Router(tags=["queue"])


class ErrorOut(Schema):
    detail: str


class ClaimOut(Schema):
    example_id: int
    text: str
    reason: str = Field(description="Why this item was chosen, in a sentence.")
    lease_id: UUID
    lease_expires_at: datetime
    meta: dict[str, Any] = Field(default_factory=dict)
    observed_at: datetime | None = None
    labels: list[str] = Field(default_factory=list, description="The project's label names, in display order.")
    resumed: bool = Field(False, description="True when this is a lease the caller already held.")


class AnnotationIn(Schema):
    label: str = Field(description="A label name of the example's project.")
    lease_id: UUID | None = Field(None, description="The lease from the claim; makes a retried submit idempotent.")


class AnnotationOut(Schema):
    id: int
    example_id: int
    label: str
    author: str
    kind: str
    status: str
    lease_id: UUID | None
    created_at: datetime


class LeaseOut(Schema):
    lease_id: UUID
    example_id: int
    state: str
    lease_expires_at: datetime | None


class UndoIn(Schema):
    annotation_id: int | None = Field(None, description="The label to undo; the caller's last label when empty.")


class UndoOut(Schema):
    annotation: AnnotationOut
    lease: LeaseOut | None


def _claim_out(claim: services.Claim, labels: list[str]) -> dict[str, Any]:
    item = claim.item
    return {
        "example_id": item.example_id,
        "text": item.example.text,
        "reason": item.reason,
        "lease_id": item.lease_id,
        "lease_expires_at": item.lease_expires_at,
        "meta": item.example.meta,
        "observed_at": item.example.observed_at,
        "labels": labels,
        "resumed": claim.resumed,
    }


def _annotation_out(annotation: Any, user: Any) -> dict[str, Any]:
    return {
        "id": annotation.pk,
        "example_id": annotation.example_id,
        "label": annotation.label.name,
        "author": user.get_username(),
        "kind": annotation.kind,
        "status": annotation.status,
        "lease_id": annotation.lease_id,
        "created_at": annotation.created_at,
    }


def _lease_out(item: QueueItem) -> dict[str, Any]:
    return {
        "lease_id": item.lease_id,
        "example_id": item.example_id,
        "state": item.state,
        "lease_expires_at": item.lease_expires_at,
    }


@router.post(
    "/projects/{slug}/queue/claim",
    response={200: ClaimOut, 204: None, 403: ErrorOut, 404: ErrorOut},
    summary="Lease the next example to label (any member); 204 when nothing is left for you",
)
def queue_claim(request: HttpRequest, slug: str) -> Status[Any]:
    """Lease the caller the best ready item; a lease they still hold is handed back first."""
    project, _ = selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.ANNOTATOR)
    claim = services.queue_claim_next(project=project, user=request.auth)
    if claim is None:
        return Status(204, None)
    labels = claim.labels if claim.labels is not None else selectors.label_names(project=project)
    return Status(200, _claim_out(claim, labels))


@router.post(
    "/examples/{example_id}/annotations",
    response={200: AnnotationOut, 201: AnnotationOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    summary="Label an example (any member of its project); 200 when the same label was already recorded",
)
def annotation_create(request: HttpRequest, example_id: int, payload: AnnotationIn) -> Status[Any]:
    """Record the caller's label and close its lease; a retried request returns the first label with 200."""
    example = selectors.example_get_for_user(
        user=request.auth, example_id=example_id, minimum_role=ProjectRole.ANNOTATOR
    )
    try:
        result = services.annotation_submit(
            user=request.auth, example=example, label=payload.label, lease_id=payload.lease_id
        )
    except services.AnnotationError as exc:
        return Status(exc.status, {"detail": str(exc)})
    return Status(201 if result.created else 200, _annotation_out(result.annotation, request.auth))


def _lease_for_caller(request: HttpRequest, lease_id: UUID) -> QueueItem:
    """Return the caller's leased item; 404 for unknown leases, leases of others, or lost membership."""
    try:
        item = services.queue_lease_get(user=request.auth, lease_id=lease_id)
    except services.LeaseError as exc:
        raise Http404(str(exc)) from exc
    selectors.project_role_require(user=request.auth, project=item.project, minimum_role=ProjectRole.ANNOTATOR)
    return item


@router.post(
    "/leases/{lease_id}/release",
    response={200: LeaseOut, 404: ErrorOut, 409: ErrorOut},
    summary="Give a leased item back (skip): it goes to the back of the queue for you only",
)
def lease_release(request: HttpRequest, lease_id: UUID) -> Status[Any]:
    item = _lease_for_caller(request, lease_id)
    try:
        released = services.queue_release(user=request.auth, lease_id=item.lease_id)
    except services.LeaseError as exc:
        return Status(409, {"detail": str(exc)})
    return Status(200, {**_lease_out(released), "lease_id": lease_id, "lease_expires_at": None})


@router.post(
    "/leases/{lease_id}/heartbeat",
    response={200: LeaseOut, 404: ErrorOut},
    summary="Keep a lease: push its expiry a full lease term ahead",
)
def lease_heartbeat(request: HttpRequest, lease_id: UUID) -> Status[Any]:
    _lease_for_caller(request, lease_id)
    try:
        item = services.queue_lease_extend(user=request.auth, lease_id=lease_id)
    except services.LeaseError as exc:
        raise Http404(str(exc)) from exc
    return Status(200, _lease_out(item))


@router.post(
    "/projects/{slug}/annotations/undo",
    response={200: UndoOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    summary="Undo your last label (or the one named): it is withdrawn and its item leased back to you",
)
def annotation_undo(request: HttpRequest, slug: str, payload: UndoIn) -> Status[Any]:
    project, _ = selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.ANNOTATOR)
    try:
        annotation, item = services.annotation_undo(
            user=request.auth, project_id=project.pk, annotation_id=payload.annotation_id
        )
    except services.AnnotationError as exc:
        return Status(exc.status, {"detail": str(exc)})
    return Status(
        200,
        {
            "annotation": _annotation_out(annotation, request.auth),
            "lease": _lease_out(item) if item is not None and item.lease_id else None,
        },
    )
