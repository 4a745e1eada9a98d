"""Switch what serves: the project's published (model version, rule set), atomically, with every switch recorded.

Publishing a newer version, rolling back to an earlier one and putting a new rule set live are the same switch:
one row (`Deployment`) changes inside a transaction that also moves the versions' statuses, so a serving process
that reads the row sees either the old pair or the new one, never a mix.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from models_app.models import (
    Deployment,
    DeploymentAction,
    DeploymentEvent,
    GateDecision,
    ModelVersion,
    ModelVersionStatus,
    RuleSet,
)
from models_app.services.predict import serving_refresh

ERROR_NOT_READY = "Model v{number} is still training; only an evaluated version can be published."
ERROR_NEEDS_REASON = (
    "Model v{number} did not pass the gate ({reason}). Publishing it anyway needs a written reason, which is kept."
)
ERROR_NO_GATE = "the gate has not judged it"
ERROR_NO_PUBLISHED_MODEL = "Publish a model first: rules run on top of the published model."
ERROR_OTHER_PROJECT = "That belongs to another project."
ERROR_MODEL_CHANGED = "Another model version was published while the rules were being checked; publish them again."
ERROR_REASON_LENGTH = "Keep the reason under 2,000 characters."
ERROR_RULES_NEED_REASON = (
    "These rules make the published model worse on its holdout ({reason}); publishing them needs a reason."
)
REASON_LIMIT = 2000
_UNSET: Any = object()


class PublishError(Exception):
    """The switch was refused; the message says why and what would allow it."""


def _lock(project_id: int) -> Deployment | None:
    """Lock the project's deployment row (when there is one) so two switches happen one after the other."""
    return Deployment.objects.select_for_update().filter(project_id=project_id).first()


def _switch(
    *,
    project_id: int,
    deployment: Deployment | None,
    version: ModelVersion,
    rule_set: RuleSet | None,
    user: Any,
) -> tuple[ModelVersion | None, RuleSet | None]:
    """Point the deployment at (version, rule_set) and move the statuses; return the previous pair."""
    now = timezone.now()
    previous_model = deployment.model_version if deployment else None
    previous_rules = deployment.rule_set if deployment else None
    if previous_model is None or previous_model.pk != version.pk:
        ModelVersion.objects.filter(project_id=project_id, status=ModelVersionStatus.PUBLISHED).exclude(
            pk=version.pk
        ).update(status=ModelVersionStatus.RETIRED)
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersionStatus.PUBLISHED, published_at=now)
    user_id = getattr(user, "pk", None)
    # Forget the old pair in this process now and again at commit (a request in between may re-read the old one).
    serving_refresh(project_id=project_id)
    transaction.on_commit(lambda: serving_refresh(project_id=project_id))
    if deployment is None:
        Deployment.objects.create(
            project_id=project_id, model_version=version, rule_set=rule_set, switched_at=now, switched_by_id=user_id
        )
    else:
        Deployment.objects.filter(pk=deployment.pk).update(
            model_version=version,
            rule_set=rule_set,
            serial=deployment.serial + 1,
            switched_at=now,
            switched_by_id=user_id,
        )
    return previous_model, previous_rules


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if len(reason) > REASON_LIMIT:
        raise PublishError(ERROR_REASON_LENGTH)
    return reason


def model_version_publish(
    *, version: ModelVersion, user: Any = None, reason: str = "", rule_set: RuleSet | None = _UNSET
) -> DeploymentEvent:
    """Publish a version (or roll back to one): it serves from the next request, with the current rules.

    A version the gate did not pass needs a written reason; the override is recorded on its gate decision.
    """
    reason = _clean_reason(reason)
    with transaction.atomic():
        deployment = _lock(version.project_id)
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelVersionStatus.TRAINING:
            raise PublishError(ERROR_NOT_READY.format(number=version.number))
        decision = GateDecision.objects.filter(model_version=version).order_by("-id").first()
        failed = decision is None or not decision.passed
        if failed and not reason:
            why = ERROR_NO_GATE if decision is None else (decision.reasons or ["failed"])[0].rstrip(".")
            raise PublishError(ERROR_NEEDS_REASON.format(number=version.number, reason=why))
        if rule_set is _UNSET:
            rule_set = deployment.rule_set if deployment else None
        if rule_set is not None and rule_set.project_id != version.project_id:
            raise PublishError(ERROR_OTHER_PROJECT)
        current = deployment.model_version if deployment else None
        if failed:
            action = DeploymentAction.OVERRIDE
            if decision is not None:
                GateDecision.objects.filter(pk=decision.pk).update(
                    overridden_by_id=getattr(user, "pk", None), override_reason=reason, overridden_at=timezone.now()
                )
        elif current is not None and version.number < current.number:
            action = DeploymentAction.ROLLBACK
        else:
            action = DeploymentAction.PUBLISH
        previous_model, previous_rules = _switch(
            project_id=version.project_id, deployment=deployment, version=version, rule_set=rule_set, user=user
        )
        return DeploymentEvent.objects.create(
            project_id=version.project_id,
            action=action,
            model_version=version,
            rule_set=rule_set,
            previous_model_version=previous_model,
            previous_rule_set=previous_rules,
            gate_decision=decision,
            reason=reason,
            by_id=getattr(user, "pk", None),
        )


def rules_publish(
    *,
    project_id: int,
    rule_set: RuleSet | None,
    user: Any = None,
    reason: str = "",
    worse: str = "",
    checked_on: int | None = None,
) -> DeploymentEvent:
    """Switch the project's live rule set, keeping the published model; `worse` names a harm found on the holdout.

    `checked_on` is the id of the model version the rules were measured on: if another version was published
    meanwhile, the switch is refused rather than putting rules live on a model they were never checked against.
    """
    reason = _clean_reason(reason)
    if rule_set is not None and rule_set.project_id != project_id:
        raise PublishError(ERROR_OTHER_PROJECT)
    if worse and not reason:
        raise PublishError(ERROR_RULES_NEED_REASON.format(reason=worse))
    with transaction.atomic():
        deployment = _lock(project_id)
        if deployment is None:
            raise PublishError(ERROR_NO_PUBLISHED_MODEL)
        if checked_on is not None and deployment.model_version_id != checked_on:
            raise PublishError(ERROR_MODEL_CHANGED)
        previous_model, previous_rules = _switch(
            project_id=project_id,
            deployment=deployment,
            version=deployment.model_version,
            rule_set=rule_set,
            user=user,
        )
        return DeploymentEvent.objects.create(
            project_id=project_id,
            action=DeploymentAction.RULES,
            model_version=deployment.model_version,
            rule_set=rule_set,
            previous_model_version=previous_model,
            previous_rule_set=previous_rules,
            reason=reason,
            by_id=getattr(user, "pk", None),
        )
