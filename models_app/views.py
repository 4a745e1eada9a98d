"""The model pages of the learning loop: the versions and their scores, one version in detail, a training run."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING, trigger_client_event

from labeling.models import JobState, Project, ProjectRole
from labeling.views.common import page_context, project_view
from models_app import selectors, services
from models_app.ml.cascade import SOURCES
from models_app.models import ModelVersion, QueueBuild, QueueBuildTrigger, TrainingRun, TrainingTrigger
from models_app.project_settings import (
    learning_settings_get,
    queue_settings_get,
    queue_settings_parse,
    serving_settings_get,
)

PAGE_SIZE = 50
SHA256_SHOWN = 12
# Sent with the poll's final answer, so the versions table reloads itself when a run ends.
RUN_FINISHED_EVENT = "training-run-finished"

ERROR_NO_VERSION = "This project has no model version {number}."
ERROR_NO_RUN = "This project has no training run {run_id}."
ERROR_NO_BUILD = "This project has no queue build {build_id}."
MESSAGE_BUILD_QUEUED = "A rebuild of the queue is queued; its progress shows below."
MESSAGE_BUILD_JOINED = "A rebuild was already queued or running; it was joined."
MESSAGE_QUEUE_SETTINGS_SAVED = "Queue settings saved; the queue is being rebuilt with them."
# Sent with the poll's final answer, so the ranking page reloads its tables when a build ends.
BUILD_FINISHED_EVENT = "queue-build-finished"
SOURCE_NAMES = {
    "uncertain": "Uncertain",
    "hard_negative": "Hard negatives",
    "label_error": "Possible label errors",
    "llm_disagrees": "LLM disagrees",
    "feedback": "Feedback",
    "exploration": "Exploration",
}
SOURCE_HELP = {
    "uncertain": "Where the model's probabilities are closest to a tie (or, before any model, where the LLM was "
    "least sure).",
    "hard_negative": "Unlabeled examples most like the labeled ones the model gets wrong out of fold.",
    "label_error": "Labels the model finds implausible (confident learning), sent to a second annotator.",
    "llm_disagrees": "Examples where an LLM's label and the model's prediction differ.",
    "feedback": "Production predictions the model was unsure about, sent back as examples.",
    "exploration": "Random picks, stratified by a metadata field when there is one, so the model sees the real mix.",
}
MESSAGE_RUN_QUEUED = "Retraining is queued; its progress shows below."
MESSAGE_RUN_WAITING = "A run was already waiting for a worker; it will train on the newest labels."
MESSAGE_RUN_FOLLOW_UP = "A run is training now; one more run will follow it with the labels that arrived since."


@require_GET
@project_view(ProjectRole.REVIEWER)
def model_list(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """List the model versions, newest first, with the latest run and how models are evaluated and retrained.

    htmx gets only the versions table: its pages, and its reload when a polled run ends.
    """
    page = Paginator(selectors.model_version_list(project=project), PAGE_SIZE).get_page(request.GET.get("page"))
    if request.htmx:
        return render(request, "models_app/model_list.html#versions", page_context(request, project, role, page=page))
    from .views_serving import serving_history

    run = selectors.training_run_latest(project=project)
    learning = learning_settings_get(project)
    human_labels = services.human_label_count(project=project)
    context = page_context(
        request,
        project,
        role,
        page=page,
        learning=learning,
        holdout_percent=round(learning.holdout_share * 100),
        human_labels=human_labels,
        labels_since_run=max(human_labels - run.labels_at_start, 0) if run is not None else human_labels,
        deployment=services.deployment_get(project_id=project.pk),
        serving=serving_settings_get(project),
        history=serving_history(project),
        **_run_context(run),
    )
    return render(request, "models_app/model_list.html", context)


@require_POST
@project_view(ProjectRole.REVIEWER)
def model_retrain(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Ask for a training run; one already queued or training is joined instead (single-flight per project).

    htmx gets the run's partial with a notice; a plain form post is redirected back to the models page.
    """
    asked_at = timezone.now()
    run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON, user=request.user)
    notice = _retrain_notice(run, asked_at)
    if request.htmx:
        context = page_context(request, project, role, notice=notice, **_run_context(run))
        return render(request, "models_app/model_list.html#run_slot", context)
    messages.success(request, notice)
    return HttpResponseRedirect(reverse("models_app:model_list", kwargs={"slug": project.slug}), status=303)


@require_GET
@project_view(ProjectRole.REVIEWER)
def model_detail(request: HttpRequest, *, project: Project, role: str, number: int) -> HttpResponse:
    """Show how one version scored on its holdout: per class, confused with what, how calibrated, trained on what."""
    version = selectors.model_version_get(project=project, number=number)
    if version is None:
        raise Http404(ERROR_NO_VERSION.format(number=number))
    from .views_serving import gate_context

    context = page_context(request, project, role, version=version, **_report_context(version), **gate_context(version))
    return render(request, "models_app/model_detail.html", context)


@require_GET
@project_view(ProjectRole.REVIEWER)
def training_run(request: HttpRequest, *, project: Project, role: str, run_id: int) -> HttpResponse:
    """Show a training run's progress; the htmx poll gets the partial, 286 and a reload event once it ended."""
    run = selectors.training_run_get(project=project, run_id=run_id)
    if run is None:
        raise Http404(ERROR_NO_RUN.format(run_id=run_id))
    context = page_context(request, project, role, **_run_context(run))
    if not request.htmx:
        return render(request, "models_app/run.html", context)
    if not run.is_finished:
        return render(request, "models_app/run.html#run", context)
    response = render(request, "models_app/run.html#run", context, status=HTMX_STOP_POLLING)
    return trigger_client_event(response, RUN_FINISHED_EVENT)


def _run_context(run: TrainingRun | None) -> dict[str, Any]:
    return {"run": run, "percent": round(run.progress * 100) if run is not None else 0}


def _retrain_notice(run: TrainingRun, asked_at: datetime) -> str:
    """Say whether the button queued a new run or joined the active one."""
    if run.created_at >= asked_at:
        return MESSAGE_RUN_QUEUED
    return MESSAGE_RUN_FOLLOW_UP if run.state == JobState.RUNNING else MESSAGE_RUN_WAITING


def _report_context(version: ModelVersion) -> dict[str, Any]:
    """Arrange a version's stored reports for the page: rows per class, the confusion matrix, the comparison."""
    metrics = version.metrics or {}
    per_class = metrics.get("per_class") or {}
    labels = list(metrics.get("labels") or per_class)
    random_metrics = version.random_split_metrics or {}
    baseline = metrics.get("majority_baseline") or {}
    random_baseline = random_metrics.get("majority_baseline") or {}
    comparison = [
        ("Macro-F1", metrics.get("macro_f1"), random_metrics.get("macro_f1")),
        ("Accuracy", metrics.get("accuracy"), random_metrics.get("accuracy")),
        ("Majority baseline macro-F1", baseline.get("macro_f1"), random_baseline.get("macro_f1")),
        ("Calibration error (ECE)", metrics.get("ece"), random_metrics.get("ece")),
    ]
    return {
        "metrics": metrics,
        "random_metrics": random_metrics,
        "baseline": baseline,
        "class_rows": [{"label": label, **per_class.get(label, {})} for label in labels],
        "labels": labels,
        "confusion_rows": _confusion_rows(labels, metrics.get("confusion") or []),
        "comparison": [
            {"name": name, "time": time, "random": other, "gap": other - time if None not in (time, other) else None}
            for name, time, other in comparison
        ],
        "counts": version.training_counts or {},
        "holdout": version.holdout or {},
        "sha256_short": version.artifact_sha256[:SHA256_SHOWN],
    }


def _confusion_rows(labels: list[str], confusion: list[list[int]]) -> list[dict[str, Any]]:
    """Return one row per true label, each cell with its count and its share of that row (for shading)."""
    rows = []
    for position, label in enumerate(labels):
        counts = list(confusion[position]) if position < len(confusion) else []
        counts += [0] * (len(labels) - len(counts))
        total = sum(counts)
        cells = [
            {
                "predicted": labels[column],
                "count": count,
                "share": round(count / total, 3) if total else 0.0,
                "percent": round(100 * count / total) if total else 0,
                "correct": column == position,
            }
            for column, count in enumerate(counts[: len(labels)])
        ]
        rows.append({"label": label, "total": total, "cells": cells})
    return rows


@require_GET
@project_view(ProjectRole.REVIEWER)
def queue_ranking(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show how the queue's front is ranked: the latest build by source, its history across model versions.

    htmx gets only the tables (their reload when a polled build ends).
    """
    builds = selectors.queue_build_list(project=project)
    context = page_context(request, project, role, **_ranking_context(project, builds))
    if request.htmx:
        return render(request, "models_app/queue_ranking.html#tables", context)
    return render(request, "models_app/queue_ranking.html", context)


@require_POST
@project_view(ProjectRole.REVIEWER)
def queue_rebuild(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Ask for a rebuild of the queue's front; one already queued or running is joined (single-flight)."""
    before = QueueBuild.objects.filter(project=project).order_by("-id").values_list("id", flat=True).first()
    build = services.queue_build_request(project=project, trigger=QueueBuildTrigger.BUTTON, user=request.user)
    notice = MESSAGE_BUILD_JOINED if build.pk == before else MESSAGE_BUILD_QUEUED
    if request.htmx:
        context = page_context(request, project, role, notice=notice, **_build_context(build))
        return render(request, "models_app/queue_ranking.html#build_slot", context)
    messages.success(request, notice)
    return HttpResponseRedirect(reverse("models_app:queue_ranking", kwargs={"slug": project.slug}), status=303)


@require_POST
@project_view(ProjectRole.ADMIN)
def queue_settings_save(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Save the queue settings from the ranking page's form (admins), then rebuild the queue with them."""
    current = queue_settings_get(project)
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, default in asdict(current).items():
        raw = request.POST.get(name)
        if raw is None:
            continue
        raw = raw.strip()
        if isinstance(default, str):
            data[name] = raw
            continue
        try:
            data[name] = int(raw) if isinstance(default, int) else float(raw)
        except ValueError:
            errors[name] = f"{name} must be a number."
    if not errors:
        try:
            settings = queue_settings_parse({**asdict(current), **data})
        except ValueError as exc:
            message = str(exc)
            errors[next((name for name in data if message.startswith(f"{name} ")), "__all__")] = message
    if errors:
        builds = selectors.queue_build_list(project=project)
        context = page_context(
            request, project, role, form_errors=errors, form_values=data, **_ranking_context(project, builds)
        )
        return render(request, "models_app/queue_ranking.html", context, status=400)
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        locked.settings = {**(locked.settings or {}), "queue": asdict(settings)}
        locked.save(update_fields=["settings"])
        services.queue_build_request(project=locked, trigger=QueueBuildTrigger.SETTINGS, user=request.user)
    messages.success(request, MESSAGE_QUEUE_SETTINGS_SAVED)
    return HttpResponseRedirect(reverse("models_app:queue_ranking", kwargs={"slug": project.slug}), status=303)


@require_GET
@project_view(ProjectRole.REVIEWER)
def queue_build(request: HttpRequest, *, project: Project, role: str, build_id: int) -> HttpResponse:
    """Follow one build; the htmx poll gets the partial, then 286 and a reload event once it ended."""
    build = selectors.queue_build_get(project=project, build_id=build_id)
    if build is None:
        raise Http404(ERROR_NO_BUILD.format(build_id=build_id))
    context = page_context(request, project, role, **_build_context(build))
    if not request.htmx:
        return HttpResponseRedirect(reverse("models_app:queue_ranking", kwargs={"slug": project.slug}))
    if not build.is_finished:
        return render(request, "models_app/queue_ranking.html#build", context)
    response = render(request, "models_app/queue_ranking.html#build", context, status=HTMX_STOP_POLLING)
    return trigger_client_event(response, BUILD_FINISHED_EVENT)


def _build_context(build: QueueBuild | None) -> dict[str, Any]:
    return {"build": build, "build_percent": round(build.progress * 100) if build is not None else 0}


def _ranking_context(project: Project, builds: list[QueueBuild]) -> dict[str, Any]:
    """Arrange the builds for the page: the latest one by source, and one row per finished build."""
    settings = queue_settings_get(project)
    latest = next((build for build in builds if build.state == JobState.SUCCEEDED), None)
    quotas = settings.quotas()
    composition = (latest.composition or {}) if latest is not None else {}
    source_rows = [
        {
            "name": name,
            "title": SOURCE_NAMES[name],
            "help": SOURCE_HELP[name],
            "quota_percent": round(quotas.get(name, 0.0) * 100),
            "proposed": (composition.get("proposed") or {}).get(name, 0),
            "slots": (composition.get("slots") or {}).get(name, 0),
            "picked": (composition.get("picked") or {}).get(name, 0),
        }
        for name in SOURCES
    ]
    slice_size = max(latest.slice_size, 1) if latest is not None else 1
    for row in source_rows:
        row["picked_percent"] = round(100 * row["picked"] / slice_size)
    history = []
    for build in builds:
        if build.state != JobState.SUCCEEDED:
            continue
        picked = (build.composition or {}).get("picked") or {}
        size = max(build.slice_size, 1)
        history.append(
            {
                "build": build,
                "cells": [
                    {"name": name, "count": picked.get(name, 0), "percent": round(100 * picked.get(name, 0) / size)}
                    for name in SOURCES
                ],
                "seconds": round(sum((build.timings or {}).values()), 2),
            }
        )
    ready = sorted(((composition.get("ready_by_reason") or {}).items()), key=lambda item: -item[1])
    return {
        "queue_settings": settings,
        "quota_fields": [(f"quota_{name}", SOURCE_NAMES[name], getattr(settings, f"quota_{name}")) for name in SOURCES],
        "latest": latest,
        "source_rows": source_rows,
        "dropped": composition.get("dropped") or {},
        "history": history,
        "sources": [SOURCE_NAMES[name] for name in SOURCES],
        "source_keys": list(SOURCES),
        "ready_by_reason": ready,
        "uncertainty_choices": ("entropy", "margin", "least_confidence"),
        **_build_context(builds[0] if builds else None),
    }
