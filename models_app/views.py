"""The model pages of the learning loop: the versions and their scores, one version in detail, a training run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING, trigger_client_event

from labeling.models import JobState, Project, ProjectRole
from labeling.views.common import page_context, project_view
from models_app import selectors, services
from models_app.models import ModelVersion, TrainingRun, TrainingTrigger
from models_app.project_settings import learning_settings_get

PAGE_SIZE = 50
SHA256_SHOWN = 12
# Sent with the poll's final answer, so the versions table reloads itself when a run ends.
RUN_FINISHED_EVENT = "training-run-finished"

ERROR_NO_VERSION = "This project has no model version {number}."
ERROR_NO_RUN = "This project has no training run {run_id}."
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
    context = page_context(request, project, role, version=version, **_report_context(version))
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
