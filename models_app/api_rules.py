"""The rules part of the JSON API: list the saved rule sets, preview rules on the holdout, save and publish them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status

from labeling import selectors as labeling_selectors
from labeling.models import ProjectRole
from models_app import services
from models_app.api_serving import ERROR_PUBLISH_BODY, OPTIONAL_REASON_BODY, DeploymentOut, ErrorOut, publish_reason
from models_app.ml.rules import RuleError
from models_app.models import DeploymentEvent

router = Router(tags=["rules"])

ERROR_NO_RULE_SET = "No rule set {number} in this project."
RULES_HELP = (
    "Rules in order, as models_app.ml.rules reads them: each {name, enabled, conditions: [{kind, ...}], action, "
    "label or tag}. Kinds: keywords (words, mode any/all), regex (pattern), meta_equals (field, value), meta_in "
    "(field, values), confidence_below (threshold), predicted_in (labels). Actions: force, forbid, abstain, tag."
)
PREVIEW_HELP = (
    "What the rules do on the published model's holdout (else the newest evaluated model's): available, message, "
    "model_version, published, holdout_size, rules, changed, fixed, broken, abstained, coverage, fired (per rule "
    "name), firings (per position), without and with_rules (answered, accuracy, macro_f1, per_class_recall), "
    "worse (why publishing needs a reason, or empty) and up to 20 samples of rows the rules change or abstain on."
)


class RulesPreviewIn(Schema):
    rules: list[Any] = Field(description=RULES_HELP)


class RulesSaveIn(Schema):
    rules: list[Any] = Field(description=RULES_HELP)
    note: str = Field("", description="What changed and why; kept with the rule set.")
    publish: bool = Field(False, description="Also put the new rule set live; when refused, nothing is saved.")
    reason: str = Field("", description="Why, when the preview shows the rules make the published model worse.")


class RulesSavedOut(Schema):
    number: int
    preview: dict[str, Any] = Field(description=PREVIEW_HELP)
    published: bool


class RuleSetOut(Schema):
    number: int
    note: str
    created_by: str | None
    created_at: datetime
    live: bool
    rules: list[dict[str, Any]]
    preview: dict[str, Any] = Field(description="The headline numbers of the preview seen when it was saved.")


class RulesOut(Schema):
    live: int | None = Field(description="The number of the rule set that serves; empty when no rules are live.")
    model_version: int | None = Field(description="The published model the rules run on.")
    versions: list[RuleSetOut] = Field(description="Saved rule sets, newest first.")


@router.get(
    "/projects/{slug}/rules",
    response={200: RulesOut, 403: ErrorOut, 404: ErrorOut},
    summary="The live rule set and every saved one, newest first (reviewers)",
)
def rules_list(request: HttpRequest, slug: str, limit: int = 50) -> dict[str, Any]:
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    deployment = services.deployment_get(project_id=project.pk)
    live = deployment.rule_set_id if deployment is not None else None
    return {
        "live": deployment.rule_set.number if deployment is not None and deployment.rule_set_id else None,
        "model_version": deployment.model_version.number if deployment is not None else None,
        "versions": [
            {
                "number": rule_set.number,
                "note": rule_set.note,
                "created_by": rule_set.created_by.get_username() if rule_set.created_by_id else None,
                "created_at": rule_set.created_at,
                "live": rule_set.pk == live,
                "rules": [rule.as_spec() for rule in rule_set.rules.all()],
                "preview": services.preview_summary(rule_set.preview or {}),
            }
            for rule_set in services.rule_set_list(project=project, limit=max(1, min(limit, 500)))
        ],
    }


@router.post(
    "/projects/{slug}/rules/preview",
    response={200: dict[str, Any], 400: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    summary="Measure rules on the published model's holdout without saving them (reviewers)",
    description=PREVIEW_HELP,
)
def rules_preview(request: HttpRequest, slug: str, payload: RulesPreviewIn) -> Status[Any]:
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    try:
        return Status(200, services.rules_preview(project=project, rules=payload.rules))
    except RuleError as exc:
        return Status(400, {"detail": str(exc)})


@router.post(
    "/projects/{slug}/rules",
    response={201: RulesSavedOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    summary="Save rules as the next rule set, and optionally put it live (admins)",
)
def rules_save(request: HttpRequest, slug: str, payload: RulesSaveIn) -> Status[Any]:
    """Validate and save the rules with their preview; with `publish`, a refused publish saves nothing (409)."""
    project, _ = labeling_selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.ADMIN)
    try:
        rule_set = services.rule_set_save(
            project=project,
            rules=payload.rules,
            note=payload.note,
            user=request.auth,
            publish=payload.publish,
            reason=payload.reason,
        )
    except RuleError as exc:
        return Status(400, {"detail": str(exc)})
    except services.PublishError as exc:
        return Status(409, {"detail": str(exc)})
    return Status(201, {"number": rule_set.number, "preview": rule_set.preview, "published": payload.publish})


@router.post(
    "/projects/{slug}/rules/{number}/publish",
    response={200: DeploymentOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
    openapi_extra=OPTIONAL_REASON_BODY,
    summary="Put a saved rule set live on the published model, or roll back to an earlier one (admins)",
)
def rules_publish(request: HttpRequest, slug: str, number: int) -> Status[Any]:
    """Switch the live rules atomically; rules that make the published model worse need `{"reason": "..."}`."""
    project, _ = labeling_selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.ADMIN)
    rule_set = services.rule_set_get(project=project, number=number)
    if rule_set is None:
        return Status(404, {"detail": ERROR_NO_RULE_SET.format(number=number)})
    reason = publish_reason(request)
    if reason is None:
        return Status(400, {"detail": ERROR_PUBLISH_BODY})
    try:
        event = services.rule_set_publish(rule_set=rule_set, user=request.auth, reason=reason)
    except services.PublishError as exc:
        return Status(409, {"detail": str(exc)})
    event = DeploymentEvent.objects.select_related("model_version", "rule_set", "previous_model_version").get(
        pk=event.pk
    )
    deployment = services.deployment_get(project_id=project.pk)
    return Status(
        200,
        {
            "model_version": event.model_version.number,
            "rules_version": event.rule_set.number if event.rule_set_id else None,
            "serial": deployment.serial if deployment is not None else 0,
            "action": event.action,
            "previous_model_version": event.previous_model_version.number if event.previous_model_version_id else None,
            "switched_at": event.created_at,
        },
    )
