"""The serving part of the JSON API: predictions, publishing and rollback, gate decisions and the deployment."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from ninja import Field, Router, Schema, Status

from labeling import selectors as labeling_selectors
from labeling.models import ProjectRole
from models_app import services
from models_app.ml.rules import RuleError
from models_app.ml.training import ArtifactError
from models_app.models import DeploymentEvent, GateDecision, ModelVersion

router = Router(tags=["serving"])
logger = logging.getLogger(__name__)

ERROR_TEXTS_EMPTY = "Send at least one text in `texts`."
ERROR_TEXTS_TOO_MANY = "Send at most {limit:,} texts per call; this call had {count:,}."
ERROR_TEXT_EMPTY = "texts[{index}] is empty: every text needs at least one visible character."
ERROR_TEXT_TOO_LONG = "texts[{index}] has {length:,} characters; the limit is {limit:,}."
ERROR_META_LENGTH = "`meta` needs one object per text: got {meta:,} for {texts:,} texts."
ERROR_NO_VERSION = "No model version {number} in this project."
ERROR_CANNOT_SERVE = "The published model cannot answer right now: {problem} Publish another version or fix the rules."
OPTIONAL_REASON_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object", "properties": {"reason": {"type": "string"}}}}},
    }
}
ERROR_PUBLISH_BODY = 'The body is optional; when sent it must be a JSON object like {"reason": "why"}.'


class ErrorOut(Schema):
    detail: str


class PredictIn(Schema):
    texts: list[str] = Field(description="1 to 1,000 texts to classify, each at most 20,000 characters.")
    meta: list[dict[str, Any]] | None = Field(
        None, description="Optional: one object per text with the fields rules may test (e.g. channel)."
    )


class PredictionOut(Schema):
    label: str = Field(description="The answer after the rules; when abstained, the model's best guess.")
    probabilities: dict[str, float] = Field(description="The model's probability per label (before the rules).")
    abstained: bool = Field(description="True when a rule sends this text to people instead of answering.")
    rules_fired: list[str] = Field(description="Names of the rules that changed or marked this prediction, in order.")
    confidence: float = Field(description="The model's top probability.")
    tags: list[str] = Field(description="Tags the rules added.")


class PredictOut(Schema):
    model_version: int
    rules_version: int | None = Field(description="The rule set that ran on top; empty when no rules are published.")
    predictions: list[PredictionOut]


class DeploymentOut(Schema):
    model_version: int
    rules_version: int | None
    serial: int = Field(description="Grows by one at every switch; serving reads the switch on its next request.")
    action: str = Field(description="publish, override, rollback or rules.")
    previous_model_version: int | None
    switched_at: datetime


class GateDecisionOut(Schema):
    model_version: int
    against: int | None = Field(description="The published version it was compared with; empty for a first version.")
    passed: bool
    reasons: list[str]
    checks: list[dict[str, Any]]
    comparison: dict[str, Any]
    created_at: datetime
    override_reason: str
    overridden_at: datetime | None


def _validate(payload: PredictIn) -> str | None:
    """Return a message for input the model cannot answer, or None."""
    if not payload.texts:
        return ERROR_TEXTS_EMPTY
    if len(payload.texts) > services.MAX_TEXTS:
        return ERROR_TEXTS_TOO_MANY.format(limit=services.MAX_TEXTS, count=len(payload.texts))
    for index, text in enumerate(payload.texts):
        if len(text) > services.MAX_TEXT_CHARS:
            return ERROR_TEXT_TOO_LONG.format(index=index, length=len(text), limit=services.MAX_TEXT_CHARS)
        if not text.strip():
            return ERROR_TEXT_EMPTY.format(index=index)
    if payload.meta is not None and len(payload.meta) != len(payload.texts):
        return ERROR_META_LENGTH.format(meta=len(payload.meta), texts=len(payload.texts))
    return None


@router.post(
    "/projects/{slug}/predict",
    response={200: PredictOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 503: ErrorOut},
    summary="Classify texts with the published model and rules (any project member; token or session)",
)
def predict(request: HttpRequest, slug: str, payload: PredictIn) -> HttpResponse | Status[Any]:
    """Answer with the published (model, rules); uncertain and abstained texts come back as labeling work."""
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.ANNOTATOR
    )
    problem = _validate(payload)
    if problem is not None:
        return Status(400, {"detail": problem})
    try:
        with transaction.atomic():
            result = services.predict(project=project, texts=payload.texts, metas=payload.meta, user=request.auth)
    except services.PredictError as exc:
        return Status(409, {"detail": str(exc)})
    except (ArtifactError, RuleError) as exc:
        # The published pair exists but cannot answer (a missing or altered artifact file, rules that no longer
        # fit the model's labels): say so instead of failing with a bare 500; the log keeps the details.
        logger.exception("project %s: the published model could not answer", slug)
        return Status(503, {"detail": ERROR_CANNOT_SERVE.format(problem=exc)})
    # The service already built plain JSON values; writing them directly skips validating every prediction again.
    body = {
        "model_version": result.model_version,
        "rules_version": result.rules_version,
        "predictions": result.predictions,
    }
    return HttpResponse(json.dumps(body, separators=(",", ":")), content_type="application/json")


def _event_out(event: DeploymentEvent, serial: int) -> dict[str, Any]:
    return {
        "model_version": event.model_version.number,
        "rules_version": event.rule_set.number if event.rule_set_id else None,
        "serial": serial,
        "action": event.action,
        "previous_model_version": event.previous_model_version.number if event.previous_model_version_id else None,
        "switched_at": event.created_at,
    }


def publish_reason(request: HttpRequest) -> str | None:
    """Return the optional body's reason ("" without a body), or None when the body is not what it should be."""
    if request.content_type != "application/json":
        return str(request.POST.get("reason", ""))
    if not request.body.strip():
        return ""
    try:
        data = json.loads(request.body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("reason", ""), str):
        return None
    return data.get("reason", "")


@router.post(
    "/projects/{slug}/models/{number}/publish",
    response={200: DeploymentOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    openapi_extra=OPTIONAL_REASON_BODY,
    summary="Publish a model version, or roll back to an earlier one, with the current rules (admins)",
)
def publish(request: HttpRequest, slug: str, number: int) -> Status[Any]:
    """Switch serving to this version atomically; a version the gate rejected needs a written reason.

    The body is optional: `{"reason": "..."}`.
    """
    project, _ = labeling_selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.ADMIN)
    version = ModelVersion.objects.filter(project=project, number=number).first()
    if version is None:
        return Status(404, {"detail": ERROR_NO_VERSION.format(number=number)})
    reason = publish_reason(request)
    if reason is None:
        return Status(400, {"detail": ERROR_PUBLISH_BODY})
    try:
        event = services.model_version_publish(version=version, user=request.auth, reason=reason)
    except services.PublishError as exc:
        return Status(409, {"detail": str(exc)})
    from flywheel.loop import model_version_published

    model_version_published(version=version, user=request.auth)
    deployment = services.deployment_get(project_id=project.pk)
    event = DeploymentEvent.objects.select_related("model_version", "rule_set", "previous_model_version").get(
        pk=event.pk
    )
    return Status(200, _event_out(event, deployment.serial if deployment else 0))


@router.get(
    "/projects/{slug}/deployment",
    response={200: list[DeploymentOut], 403: ErrorOut, 404: ErrorOut},
    summary="What serves now (first) and every earlier switch, newest first (reviewers)",
)
def deployment_history(request: HttpRequest, slug: str, limit: int = 50) -> list[dict[str, Any]]:
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    events = list(
        DeploymentEvent.objects.filter(project=project)
        .select_related("model_version", "rule_set", "previous_model_version")
        .order_by("-id")[: max(1, min(limit, 500))]
    )
    total = DeploymentEvent.objects.filter(project=project).count()
    return [_event_out(event, total - index) for index, event in enumerate(events)]


@router.get(
    "/projects/{slug}/models/{number}/gate",
    response={200: list[GateDecisionOut], 403: ErrorOut, 404: ErrorOut},
    summary="The gate's decisions on a model version, newest first, with every check and both models' metrics",
)
def gate_decisions(request: HttpRequest, slug: str, number: int) -> Status[Any]:
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    version = ModelVersion.objects.filter(project=project, number=number).first()
    if version is None:
        return Status(404, {"detail": ERROR_NO_VERSION.format(number=number)})
    decisions = GateDecision.objects.filter(model_version=version).select_related("against").order_by("-id")
    return Status(
        200,
        [
            {
                "model_version": version.number,
                "against": decision.against.number if decision.against_id else None,
                "passed": decision.passed,
                "reasons": decision.reasons,
                "checks": decision.checks,
                "comparison": decision.comparison,
                "created_at": decision.created_at,
                "override_reason": decision.override_reason,
                "overridden_at": decision.overridden_at,
            }
            for decision in decisions
        ],
    )
