"""The LLM page: pre-label examples with an LLM in a worker, see how far its labels can be trusted, set it up."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, fields
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING, trigger_client_event

from labeling import selectors as labeling_selectors
from labeling.models import Project, ProjectRole
from labeling.views.common import page_context, project_view
from models_app import selectors, services
from models_app.ml.trust import CurvePoint, Threshold, TrustReport
from models_app.models import PrelabelJob, PrelabelSelection
from models_app.project_settings import (
    ERROR_OPENAI_NEEDS,
    LLM_BOUNDS,
    LLMSettings,
    llm_settings_get,
    llm_settings_parse,
)
from models_app.services.prelabel import ERROR_FILTER, ERROR_LABELER, ERROR_LIMIT, ERROR_SELECTION, MAX_LIMIT

JOBS_SHOWN = 10
CURVE_ROWS_SHOWN = 20
# Sent with the poll's final answer, so the jobs table and the trust section reload when a job ends.
JOB_FINISHED_EVENT = "prelabel-job-finished"
# Sent when a job is queued or cancelled, so the jobs table shows it at once.
JOB_CHANGED_EVENT = "prelabel-job-changed"

LABELERS = {
    "causal_lm": "Local causal LM: a small local model (SmolLM2-135M-Instruct unless a model folder is set) scores "
    "each label.",
    "embedding": "Embeddings: MiniLM similarity between the text and each label, mixed with its labeled neighbours.",
    "openai": "OpenAI-compatible endpoint: vLLM, llama.cpp server, Ollama or OpenAI, at the base URL below.",
}
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ERROR_NO_JOB = "This project has no pre-labeling job {job_id}."
ERROR_NUMBER = "{name} must be a number."
ERROR_LIMIT_NUMBER = f"limit must be a whole number from 1 to {MAX_LIMIT:,}."
ERROR_API_KEY_ENV = (
    "api_key_env must be the name of an environment variable (letters, digits and _), not the key itself."
)
MESSAGE_PRELABEL_QUEUED = "Pre-labeling is queued; its progress shows below."
MESSAGE_PRELABEL_JOINED = (
    "A pre-labeling job was already queued or running (one at a time per project); it is shown below."
)
MESSAGE_CANCELLED = "Job {job_id} is cancelled; the labels it made so far are kept."
MESSAGE_CANCELLING = "Job {job_id} stops after the chunk it is labeling now; the labels it made so far are kept."
MESSAGE_ALREADY_FINISHED = "Job {job_id} had already finished ({state}); nothing to cancel."
MESSAGE_SETTINGS_SAVED = "LLM settings saved; they apply to the next pre-labeling job."


def _llm_url(project: Project) -> str:
    return reverse("models_app:llm", kwargs={"slug": project.slug})


def _see_other(url: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(url, status=303)


def _job_get(project: Project, job_id: int) -> PrelabelJob:
    job = selectors.prelabel_job_get(project=project, job_id=job_id)
    if job is None:
        raise Http404(ERROR_NO_JOB.format(job_id=job_id))
    return job


def _jobs(project: Project) -> list[PrelabelJob]:
    return selectors.prelabel_job_list(project=project, limit=JOBS_SHOWN)


def _job_context(job: PrelabelJob | None) -> dict[str, Any]:
    return {"job": job, "job_percent": round(job.progress * 100) if job is not None else 0}


@require_GET
@project_view(ProjectRole.REVIEWER)
def llm(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show the pre-labeling form and jobs, how far each labeler is trusted, and the LLM settings.

    htmx gets only the jobs table (its reload when a job is queued, cancelled or ends), or with `part=trust` only
    the trust section (its reload when a job ends: new labels to preview, maybe a new labeler).
    """
    if request.htmx and request.GET.get("part") == "trust":
        llm_settings = llm_settings_get(project)
        trust = [_trust(project, name, llm_settings) for name in labeling_selectors.llm_labelers(project=project)]
        context = page_context(request, project, role, llm=llm_settings, trust=trust)
        return render(request, "models_app/llm.html#trust", context)
    if request.htmx:
        context = page_context(request, project, role, jobs=_jobs(project))
        return render(request, "models_app/llm.html#jobs", context)
    return render(request, "models_app/llm.html", page_context(request, project, role, **_page_context(project)))


@require_POST
@project_view(ProjectRole.REVIEWER)
def llm_prelabel(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Queue a pre-labeling job from the form, or join the one already queued or running.

    htmx gets the form and the job's card back (with the errors next to their fields, if any); a plain form post
    is redirected back to the page, or gets the page again with the errors.
    """
    values = {
        "labeler": request.POST.get("labeler", "").strip(),
        "limit": request.POST.get("limit", "").strip(),
        "selection": request.POST.get("selection", PrelabelSelection.QUEUE).strip(),
        "filter_text": request.POST.get("filter_text", ""),
    }
    errors: dict[str, str] = {}
    job = None
    joined = False
    try:
        limit = int(values["limit"])
    except ValueError:
        errors["limit"] = ERROR_LIMIT_NUMBER
    if not errors:
        try:
            job, joined = services.prelabel_job_request(
                project=project,
                labeler=values["labeler"] or None,
                limit=limit,
                selection=values["selection"],
                filter_text=values["filter_text"],
                user=request.user,
            )
        except services.PrelabelError as exc:
            errors[_prelabel_field(str(exc))] = str(exc)
    if errors:
        extra = {"prelabel_values": values, "prelabel_errors": errors}
        if request.htmx:
            context = page_context(request, project, role, **_prelabel_context(project, **extra))
            return render(request, "models_app/llm.html#prelabel", context)
        context = page_context(request, project, role, **_page_context(project, **extra))
        return render(request, "models_app/llm.html", context, status=400)
    notice = MESSAGE_PRELABEL_JOINED if joined else MESSAGE_PRELABEL_QUEUED
    if request.htmx:
        context = page_context(request, project, role, **_prelabel_context(project, job=job, notice=notice))
        response = render(request, "models_app/llm.html#prelabel", context)
        return trigger_client_event(response, JOB_CHANGED_EVENT)
    messages.success(request, notice)
    return _see_other(_llm_url(project))


def _prelabel_field(message: str) -> str:
    """Name the form field a pre-labeling error is about."""
    return {ERROR_LABELER: "labeler", ERROR_SELECTION: "selection", ERROR_FILTER: "filter_text"}.get(
        message, "limit" if message == ERROR_LIMIT.format(limit=MAX_LIMIT) else "form"
    )


@require_POST
@project_view(ProjectRole.REVIEWER)
def llm_cancel(request: HttpRequest, *, project: Project, role: str, job_id: int) -> HttpResponse:
    """Cancel a job: a queued one at once, a running one after its current chunk; what it labeled is kept."""
    job = _job_get(project, job_id)
    if job.is_finished:
        notice = MESSAGE_ALREADY_FINISHED.format(job_id=job.pk, state=job.get_state_display().lower())
    else:
        job = services.prelabel_job_cancel(job=job)
        notice = (MESSAGE_CANCELLED if job.is_finished else MESSAGE_CANCELLING).format(job_id=job.pk)
    if request.htmx:
        context = page_context(request, project, role, notice=notice, **_job_context(job))
        response = render(request, "models_app/llm.html#job_slot", context)
        return trigger_client_event(response, JOB_CHANGED_EVENT)
    messages.info(request, notice)
    return _see_other(_llm_url(project))


@require_GET
@project_view(ProjectRole.REVIEWER)
def llm_job(request: HttpRequest, *, project: Project, role: str, job_id: int) -> HttpResponse:
    """Follow one job; the htmx poll gets its card, then 286 and a reload event once it ended."""
    job = _job_get(project, job_id)
    if not request.htmx:
        return HttpResponseRedirect(_llm_url(project))
    context = page_context(request, project, role, **_job_context(job))
    if not job.is_finished:
        return render(request, "models_app/llm.html#job", context)
    response = render(request, "models_app/llm.html#job", context, status=HTMX_STOP_POLLING)
    return trigger_client_event(response, JOB_FINISHED_EVENT)


@require_POST
@project_view(ProjectRole.ADMIN)
def llm_settings_save(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Save the LLM settings (admins); on any error nothing is saved and the page shows why next to the field."""
    current = llm_settings_get(project)
    data, errors = _settings_from_post(request.POST, current)
    settings = None
    if not errors:
        try:
            settings = llm_settings_parse({**asdict(current), **data})
        except ValueError as exc:
            errors[_settings_field(str(exc), data)] = str(exc)
    if errors or settings is None:
        context = page_context(
            request, project, role, **_page_context(project, settings_values=data, settings_errors=errors)
        )
        return render(request, "models_app/llm.html", context, status=400)
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        locked.settings = {**(locked.settings or {}), "llm": asdict(settings)}
        locked.save(update_fields=["settings"])
    messages.success(request, MESSAGE_SETTINGS_SAVED)
    return _see_other(_llm_url(project) + "#settings")


def _settings_from_post(post: Any, current: LLMSettings) -> tuple[dict[str, Any], dict[str, str]]:
    """Read the settings form: checkboxes are on when sent, numbers are parsed, text is kept as typed."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for item in fields(LLMSettings):
        name = item.name
        default = getattr(current, name)
        if isinstance(default, bool):
            data[name] = name in post
            continue
        raw = post.get(name)
        if raw is None:
            continue
        raw = raw.strip()
        if isinstance(default, str):
            data[name] = raw
            continue
        try:
            number = float(raw)
        except ValueError:
            data[name] = raw
            errors[name] = ERROR_NUMBER.format(name=name)
            continue
        data[name] = int(number) if isinstance(default, int) and number.is_integer() else number
    if data.get("api_key_env") and not ENV_NAME.match(data["api_key_env"]):
        errors["api_key_env"] = ERROR_API_KEY_ENV
        data["api_key_env"] = ""  # never echo what may be a pasted key back into the page
    return data, errors


def _settings_field(message: str, data: dict[str, Any]) -> str:
    """Name the field a settings error is about: the one the message starts with, or the empty one it needs."""
    if message == ERROR_OPENAI_NEEDS:
        return "base_url" if not data.get("base_url") else "model"
    return next((item.name for item in fields(LLMSettings) if message.startswith(f"{item.name} ")), "form")


# Page context


def _page_context(
    project: Project,
    *,
    prelabel_values: dict[str, Any] | None = None,
    prelabel_errors: dict[str, str] | None = None,
    settings_values: dict[str, Any] | None = None,
    settings_errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    llm = llm_settings_get(project)
    values = {**asdict(llm), **(settings_values or {})}
    return {
        **_prelabel_context(project, llm=llm, prelabel_values=prelabel_values, prelabel_errors=prelabel_errors),
        "jobs": _jobs(project),
        "llm": llm,
        "trust": [_trust(project, name, llm) for name in labeling_selectors.llm_labelers(project=project)],
        "settings_values": values,
        "settings_errors": settings_errors or {},
        "few_shot_bounds": LLM_BOUNDS["few_shot"],
        "target_bounds": LLM_BOUNDS["target_precision"],
    }


def _prelabel_context(
    project: Project,
    *,
    llm: LLMSettings | None = None,
    job: PrelabelJob | None = None,
    notice: str = "",
    prelabel_values: dict[str, Any] | None = None,
    prelabel_errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The pre-labeling form (with what was posted, and its errors) and the current or last job."""
    llm = llm or llm_settings_get(project)
    if job is None:
        job = selectors.prelabel_job_latest(project=project)
    return {
        "llm": llm,
        "labeler_choices": list(LABELERS.items()),
        "selection_choices": PrelabelSelection.choices,
        "prelabel_values": {
            "labeler": llm.labeler,
            "limit": 200,
            "selection": "queue",
            "filter_text": "",
            **(prelabel_values or {}),
        },
        "prelabel_errors": prelabel_errors or {},
        "max_limit": MAX_LIMIT,
        "notice": notice,
        **_job_context(job),
    }


def _trust(project: Project, labeler: str, llm: LLMSettings) -> dict[str, Any]:
    """One labeler's trust report, arranged for the page: the numbers, the per-label table, the chart, the preview."""
    report = services.trust_get(project=project, labeler=labeler)
    if report is None:
        return {"labeler": labeler, "report": None, "is_project_labeler": labeler == llm.labeler}
    preview = services.trust_preview(project=project, labeler=labeler, report=report)
    return {
        "labeler": labeler,
        "report": report,
        "is_project_labeler": labeler == llm.labeler,
        "overall": _threshold_row(report.overall),
        "agreement": _percent(report.agreement),
        "target": _percent(report.target),
        "level": _percent(report.confidence_level),
        "per_label": [_threshold_row(threshold) for threshold in report.per_label.values()],
        "chart": _chart(report),
        "curve_rows": [
            {
                "threshold": f"{point.threshold:.3g}",
                "accepted": point.accepted,
                "coverage": _percent(point.coverage),
                "precision": _percent(point.precision),
                "lower_bound": _percent(point.lower_bound),
            }
            for point in _curve_rows(report.curve)
        ],
        "preview": {
            **preview,
            "coverage_text": _percent(preview.get("coverage")),
            "precision_text": _percent(preview.get("expected_precision")),
            "lower_bound_text": _percent(preview.get("lower_bound")),
            "errors_text": f"{preview.get('expected_errors') or 0:.1f}",
            "threshold_text": f"{preview['threshold']:.3g}" if preview.get("threshold") is not None else None,
            "rows": [
                {"label": label, "pending": row["pending"], "accepted": row["accepted"]}
                for label, row in (preview.get("by_label") or {}).items()
            ],
        },
    }


def _percent(value: float | None) -> str:
    """Format a rate as a percentage with at most one decimal, or a dash when there is none."""
    if value is None:
        return "—"
    return f"{value * 100:.1f}".rstrip("0").rstrip(".") + "%"


def _threshold_row(threshold: Threshold) -> dict[str, Any]:
    return {
        "label": threshold.label,
        "threshold": f"{threshold.threshold:.3g}" if threshold.threshold is not None else None,
        "precision": _percent(threshold.precision),
        "lower_bound": _percent(threshold.lower_bound),
        "coverage": _percent(threshold.coverage),
        "accepted": threshold.accepted,
        "support": threshold.support,
        "reason": threshold.reason,
    }


def _curve_rows(curve: tuple[CurvePoint, ...]) -> list[CurvePoint]:
    """Thin the curve to about CURVE_ROWS_SHOWN rows for the table, keeping the last (accept everything)."""
    if len(curve) <= CURVE_ROWS_SHOWN:
        return list(curve)
    step = math.ceil(len(curve) / CURVE_ROWS_SHOWN)
    rows = list(curve[::step])
    if rows[-1] is not curve[-1]:
        rows.append(curve[-1])
    return rows


CHART_WIDTH, CHART_HEIGHT = 520, 260
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 48, 16, 14, 40


def _chart(report: TrustReport) -> dict[str, Any]:
    """Lay the precision / coverage curve out as SVG coordinates: precision and its lower bound against coverage."""
    points = [point for point in report.curve if point.precision is not None]
    values = [point.precision for point in points] + [
        point.lower_bound for point in points if point.lower_bound is not None
    ]
    low = min([*values, report.target], default=0.0)
    y_min = min(max(math.floor(low * 10) / 10, 0.0), 0.9)
    plot_width = CHART_WIDTH - CHART_LEFT - CHART_RIGHT
    plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM

    def x(coverage: float) -> float:
        return round(CHART_LEFT + coverage * plot_width, 1)

    def y(precision: float) -> float:
        share = (min(max(precision, y_min), 1.0) - y_min) / (1.0 - y_min)
        return round(CHART_TOP + (1.0 - share) * plot_height, 1)

    def line(name: str) -> str:
        return " ".join(
            f"{x(point.coverage)},{y(getattr(point, name))}" for point in points if getattr(point, name) is not None
        )

    step = 0.1 if 1.0 - y_min > 0.3 else 0.05
    count = round((1.0 - y_min) / step)
    overall = report.overall
    chosen = None
    if overall.threshold is not None and overall.precision is not None and overall.lower_bound is not None:
        chosen = {"x": x(overall.coverage), "y": y(overall.precision), "y_low": y(overall.lower_bound)}
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": CHART_LEFT,
        "right": CHART_WIDTH - CHART_RIGHT,
        "top": CHART_TOP,
        "bottom": CHART_HEIGHT - CHART_BOTTOM,
        "precision": line("precision"),
        "lower_bound": line("lower_bound"),
        "single": len(points) == 1,
        "first": {"x": x(points[0].coverage), "y": y(points[0].precision)} if points else None,
        "target_y": y(report.target),
        "target_label_y": y(report.target) - 4,
        "x_ticks": [{"x": x(share), "label": f"{round(share * 100)}%"} for share in (0, 0.25, 0.5, 0.75, 1)],
        "y_ticks": [
            {"y": y(y_min + i * step), "label": f"{y_min + i * step:.2f}".rstrip("0").rstrip(".")}
            for i in range(count + 1)
        ],
        "x_label_y": CHART_HEIGHT - 6,
        "tick_label_y": CHART_HEIGHT - CHART_BOTTOM + 16,
        "middle_x": CHART_LEFT + plot_width / 2,
        "chosen": chosen,
    }
