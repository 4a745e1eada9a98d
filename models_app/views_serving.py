"""The serving side of the model pages: the gate's decision on a version, publishing, overriding and rolling back."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from labeling.models import Project, ProjectRole
from labeling.views.common import project_view
from models_app import selectors, services
from models_app.models import DeploymentEvent, GateDecision, ModelVersion, ModelVersionStatus
from models_app.project_settings import serving_settings_get, serving_settings_parse

ERROR_NO_VERSION = "This project has no model version {number}."
MESSAGE_PUBLISHED = "Model v{number} now serves predictions; the queue is being re-ranked with it."
MESSAGE_SERVING_SAVED = "Gate and feedback settings saved; the next model is judged with them."
ERROR_NUMBER = "{name} must be a number."
CHECK_NAMES = {
    "holdout_size": "Holdout size",
    "macro_f1": "Macro-F1",
    "class_recall": "Recall per label",
    "rules": "Business rules on top",
}
HISTORY_SHOWN = 10


def gate_context(version: ModelVersion) -> dict[str, Any]:
    """Arrange the version's latest gate decision and the project's serving state for the model page."""
    decision = (
        GateDecision.objects.filter(model_version=version)
        .select_related("against", "rule_set", "overridden_by")
        .order_by("-id")
        .first()
    )
    deployment = services.deployment_get(project_id=version.project_id)
    serving = deployment.model_version if deployment is not None else None
    context: dict[str, Any] = {
        "decision": decision,
        "deployment": deployment,
        "serving_version": serving,
        "is_serving": serving is not None and serving.pk == version.pk,
        "is_rollback": serving is not None and version.number < serving.number,
        "needs_reason": decision is None or not decision.passed,
        "can_publish": version.status != ModelVersionStatus.TRAINING,
    }
    if decision is None:
        return context
    comparison = decision.comparison or {}
    mine = comparison.get("candidate") or {}
    theirs = comparison.get("published") or {}
    ruled = comparison.get("candidate_with_rules") or {}
    labels = sorted(set(mine.get("recall", {})) | set(theirs.get("recall", {})))
    context.update(
        checks=[{**check, "title": CHECK_NAMES.get(check["name"], check["name"])} for check in decision.checks],
        shared=comparison,
        mine=mine,
        theirs=theirs,
        ruled=ruled,
        recall_rows=[
            {
                "label": label,
                "mine": mine.get("recall", {}).get(label),
                "theirs": theirs.get("recall", {}).get(label),
            }
            for label in labels
        ],
    )
    return context


def serving_history(project: Project) -> list[DeploymentEvent]:
    """Return the project's latest switches of what serves, newest first."""
    return list(
        DeploymentEvent.objects.filter(project=project)
        .select_related("model_version", "rule_set", "previous_model_version", "by")
        .order_by("-id")[:HISTORY_SHOWN]
    )


@require_POST
@project_view(ProjectRole.ADMIN)
def model_publish(request: HttpRequest, *, project: Project, role: str, number: int) -> HttpResponse:
    """Publish (or roll back to) a version; one the gate rejected needs the reason typed in the form."""
    version = selectors.model_version_get(project=project, number=number)
    if version is None:
        raise Http404(ERROR_NO_VERSION.format(number=number))
    try:
        services.model_version_publish(version=version, user=request.user, reason=request.POST.get("reason", ""))
    except services.PublishError as exc:
        messages.error(request, str(exc))
    else:
        from flywheel.loop import model_version_published

        model_version_published(version=version, user=request.user)
        messages.success(request, MESSAGE_PUBLISHED.format(number=version.number))
    target = reverse("models_app:model_detail", kwargs={"slug": project.slug, "number": number})
    return HttpResponseRedirect(target, status=303)


@require_POST
@project_view(ProjectRole.ADMIN)
def serving_settings_save(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Save the gate's thresholds, auto-publishing and feedback settings from the Models page (admins)."""
    data: dict[str, object] = {}
    problem = ""
    for name, default in asdict(serving_settings_get(project)).items():
        if isinstance(default, bool):
            data[name] = request.POST.get(name) == "on"
            continue
        raw = (request.POST.get(name) or "").strip()
        try:
            data[name] = int(raw) if isinstance(default, int) else float(raw)
        except ValueError:
            problem = problem or ERROR_NUMBER.format(name=name)
    if not problem:
        try:
            settings = serving_settings_parse(data)
        except ValueError as exc:
            problem = str(exc)
    if problem:
        messages.error(request, problem)
    else:
        with transaction.atomic():
            locked = Project.objects.select_for_update().get(pk=project.pk)
            locked.settings = {**(locked.settings or {}), "serving": asdict(settings)}
            locked.save(update_fields=["settings"])
        messages.success(request, MESSAGE_SERVING_SAVED)
    target = reverse("models_app:model_list", kwargs={"slug": project.slug}) + "#serving-heading"
    return HttpResponseRedirect(target, status=303)
