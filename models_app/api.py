"""The models room's part of the JSON API: ask for a retrain, follow it, list the model versions."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.http import Http404, HttpRequest
from ninja import Field, Router, Schema, Status

from labeling import selectors as labeling_selectors
from labeling.models import ProjectRole
from models_app import services
from models_app.models import (
    ModelVersion,
    PrelabelJob,
    PrelabelSelection,
    PrelabelState,
    QueueBuild,
    QueueBuildTrigger,
    TrainingRun,
    TrainingTrigger,
)
from models_app.project_settings import llm_settings_get

router = Router(tags=["models"])

TRAINING_JOB_PREFIX = "train-"
QUEUE_JOB_PREFIX = "queue-"
PRELABEL_JOB_PREFIX = "prelabel-"
ERROR_NO_ACTIVE_PRELABEL = "No pre-labeling job is queued or running in this project."
ERROR_NO_RUN = "No such job."


class ErrorOut(Schema):
    detail: str


class RetrainOut(Schema):
    job_id: str = Field(description="Follow it at GET /api/v1/jobs/{job_id}.")
    state: str
    coalesced: bool = Field(
        description="True when a run was already queued or training: this request joined it (a run already "
        "training gets one follow-up run)."
    )


class TrainingJobOut(Schema):
    id: str
    kind: str = "train"
    project: str
    state: str = Field(description="queued, running, succeeded or failed.")
    progress: float
    message: str
    trigger: str
    attempts: int
    follow_up: bool
    model_version: int | None = Field(None, description="The number of the version this run produced.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class QueueBuildJobOut(Schema):
    id: str
    kind: str = "queue"
    project: str
    state: str = Field(description="queued, running, succeeded or failed.")
    progress: float
    message: str
    trigger: str
    attempts: int
    follow_up: bool
    model_version: int | None = Field(None, description="The model version that ranked it; empty for a cold start.")
    pool_size: int = Field(description="Ready examples the sources chose from.")
    slice_size: int = Field(description="Items ranked to the front of the queue.")
    composition: dict[str, Any] = Field(
        description="Per source: proposed, slots, picked; dropped (contested, duplicates, near_duplicates); "
        "ready_by_reason after the build."
    )
    timings: dict[str, float] = Field(description="Seconds per stage.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class PrelabelIn(Schema):
    labeler: str | None = Field(None, description="causal_lm, embedding or openai; empty uses the project's labeler.")
    limit: int = Field(200, description="At most this many examples.")
    selection: str = Field(PrelabelSelection.QUEUE, description="queue (the next items), unlabeled, or filter.")
    filter: str = Field("", description="With selection=filter: unlabeled examples whose text contains this.")


class PrelabelJobOut(Schema):
    id: str
    kind: str = "prelabel"
    project: str
    state: str = Field(description="queued, running, succeeded, failed or cancelled.")
    progress: float
    message: str
    labeler: str
    selection: str
    limit: int
    total: int
    done: int
    created: int = Field(description="LLM labels stored (pending review unless auto-accepted).")
    auto_accepted: int
    cancel_requested: bool
    details: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class TrustPointOut(Schema):
    threshold: float
    accepted: int
    coverage: float
    precision: float | None
    lower_bound: float | None


class TrustThresholdOut(Schema):
    label: str | None
    threshold: float | None
    precision: float | None
    lower_bound: float | None
    coverage: float
    accepted: int
    support: int
    reason: str


class TrustOut(Schema):
    labeler: str
    n: int = Field(description="Examples with both this labeler's label and a person's.")
    agreement: float | None
    kappa: float | None
    target: float
    auto_accept: bool
    overall: TrustThresholdOut | None
    per_label: dict[str, TrustThresholdOut]
    curve: list[TrustPointOut]
    preview: dict[str, Any] = Field(description="What auto-accept would do now to the pending labels.")


class HoldoutOut(Schema):
    size: int
    cutoff: datetime | None
    share: float | None = None
    support: dict[str, int] = Field(default_factory=dict)


class ModelVersionOut(Schema):
    number: int
    status: str
    featurizer: str
    feature_version: str
    algorithm: str
    params: dict[str, Any]
    seed: int
    training_counts: dict[str, Any]
    holdout: HoldoutOut
    metrics: dict[str, Any] = Field(
        description="Time-split evaluation: accuracy, macro_f1, per_class, labels, confusion, ece, majority_baseline."
    )
    random_split_metrics: dict[str, Any] = Field(
        description="The same metrics under a random split, for information: how optimistic it would have been."
    )
    artifact_sha256: str
    created_at: datetime
    trained_at: datetime | None
    published_at: datetime | None


def training_job_id(run: TrainingRun) -> str:
    """Return the job id a client follows at /api/v1/jobs/{id} (import jobs keep their plain numbers)."""
    return f"{TRAINING_JOB_PREFIX}{run.pk}"


def training_job_out(run: TrainingRun) -> dict[str, Any]:
    return {
        "id": training_job_id(run),
        "project": run.project.slug,
        "state": run.state,
        "progress": run.progress,
        "message": run.message,
        "trigger": run.trigger,
        "attempts": run.attempts,
        "follow_up": run.follow_up,
        "model_version": run.model_version.number if run.model_version_id else None,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def training_job_detail(request: HttpRequest, run_id: int) -> dict[str, Any]:
    """Show a training run to the reviewers and admins of its project; 404 for anyone else."""
    run = TrainingRun.objects.select_related("project", "model_version").filter(pk=run_id).first()
    if run is None:
        raise Http404(ERROR_NO_RUN)
    labeling_selectors.project_get_for_user(user=request.auth, slug=run.project.slug, minimum_role=ProjectRole.REVIEWER)
    return training_job_out(run)


def queue_job_id(build: QueueBuild) -> str:
    return f"{QUEUE_JOB_PREFIX}{build.pk}"


def queue_job_out(build: QueueBuild) -> dict[str, Any]:
    return {
        "id": queue_job_id(build),
        "project": build.project.slug,
        "state": build.state,
        "progress": build.progress,
        "message": build.message,
        "trigger": build.trigger,
        "attempts": build.attempts,
        "follow_up": build.follow_up,
        "model_version": build.model_number,
        "pool_size": build.pool_size,
        "slice_size": build.slice_size,
        "composition": build.composition,
        "timings": build.timings,
        "created_at": build.created_at,
        "started_at": build.started_at,
        "finished_at": build.finished_at,
    }


def queue_job_detail(request: HttpRequest, build_id: int) -> dict[str, Any]:
    """Show a queue rebuild to the reviewers and admins of its project; 404 for anyone else."""
    build = QueueBuild.objects.select_related("project").filter(pk=build_id).first()
    if build is None:
        raise Http404(ERROR_NO_RUN)
    labeling_selectors.project_get_for_user(
        user=request.auth, slug=build.project.slug, minimum_role=ProjectRole.REVIEWER
    )
    return queue_job_out(build)


def prelabel_job_id(job: PrelabelJob) -> str:
    return f"{PRELABEL_JOB_PREFIX}{job.pk}"


def prelabel_job_out(job: PrelabelJob) -> dict[str, Any]:
    return {
        "id": prelabel_job_id(job),
        "project": job.project.slug,
        "state": job.state,
        "progress": job.progress,
        "message": job.message,
        "labeler": job.labeler,
        "selection": job.selection,
        "limit": job.limit,
        "total": job.total,
        "done": job.done,
        "created": job.created,
        "auto_accepted": job.auto_accepted,
        "cancel_requested": job.cancel_requested,
        "details": job.details,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def prelabel_job_detail(request: HttpRequest, job_id: int) -> dict[str, Any]:
    """Show a pre-labeling job to the reviewers and admins of its project; 404 for anyone else."""
    job = PrelabelJob.objects.select_related("project").filter(pk=job_id).first()
    if job is None:
        raise Http404(ERROR_NO_RUN)
    labeling_selectors.project_get_for_user(user=request.auth, slug=job.project.slug, minimum_role=ProjectRole.REVIEWER)
    return prelabel_job_out(job)


@router.post(
    "/projects/{slug}/prelabel",
    response={202: RetrainOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    summary="Pre-label examples with an LLM in a worker (reviewers); one job at a time per project",
)
def prelabel(request: HttpRequest, slug: str, payload: PrelabelIn) -> Status[Any]:
    """Queue a pre-labeling job, or join the one already queued or running."""
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    try:
        job, joined = services.prelabel_job_request(
            project=project,
            labeler=payload.labeler,
            limit=payload.limit,
            selection=payload.selection,
            filter_text=payload.filter,
            user=request.auth,
        )
    except services.PrelabelError as exc:
        return Status(400, {"detail": str(exc)})
    return Status(202, {"job_id": prelabel_job_id(job), "state": job.state, "coalesced": joined})


@router.post(
    "/projects/{slug}/prelabel/cancel",
    response={200: PrelabelJobOut, 403: ErrorOut, 404: ErrorOut},
    summary="Cancel the project's pre-labeling job; what it labeled so far is kept (reviewers)",
)
def prelabel_cancel(request: HttpRequest, slug: str) -> Status[Any]:
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    job = PrelabelJob.objects.filter(project=project, state__in=(PrelabelState.QUEUED, PrelabelState.RUNNING)).first()
    if job is None:
        return Status(404, {"detail": ERROR_NO_ACTIVE_PRELABEL})
    return Status(200, prelabel_job_out(services.prelabel_job_cancel(job=job)))


@router.get(
    "/projects/{slug}/llm-trust",
    response={200: TrustOut, 403: ErrorOut, 404: ErrorOut},
    summary="How far an LLM labeler agrees with people: kappa, precision by confidence, the auto-accept threshold",
)
def llm_trust(request: HttpRequest, slug: str, labeler: str | None = None) -> Status[Any]:
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    llm = llm_settings_get(project)
    name = labeler or llm.labeler
    report = services.trust_get(project=project, labeler=name)
    empty = {"labeler": name, "n": 0, "agreement": None, "kappa": None, "target": llm.target_precision}
    if report is None:
        return Status(
            200, {**empty, "auto_accept": llm.auto_accept, "overall": None, "per_label": {}, "curve": [], "preview": {}}
        )
    return Status(
        200,
        {
            **empty,
            "n": report.n,
            "agreement": report.agreement,
            "kappa": report.kappa,
            "target": report.target,
            "auto_accept": llm.auto_accept,
            "overall": asdict(report.overall),
            "per_label": {label: asdict(value) for label, value in report.per_label.items()},
            "curve": [asdict(point) for point in report.curve],
            "preview": services.trust_preview(project=project, labeler=name, report=report),
        },
    )


@router.post(
    "/projects/{slug}/queue/rebuild",
    response={202: RetrainOut, 403: ErrorOut, 404: ErrorOut},
    summary="Re-rank the queue with the cascade in a worker (reviewers); one build at a time per project",
)
def queue_rebuild(request: HttpRequest, slug: str) -> Status[Any]:
    """Queue a rebuild of the queue's front, or join the one already queued or running."""
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    before = QueueBuild.objects.filter(project=project).order_by("-id").values_list("id", flat=True).first()
    build = services.queue_build_request(project=project, trigger=QueueBuildTrigger.API, user=request.auth)
    coalesced = before is not None and build.pk == before
    return Status(202, {"job_id": queue_job_id(build), "state": build.state, "coalesced": coalesced})


@router.get(
    "/projects/{slug}/queue/builds",
    response={200: list[QueueBuildJobOut], 403: ErrorOut, 404: ErrorOut},
    summary="The project's queue rebuilds, newest first, with each one's composition by source (reviewers)",
)
def queue_build_list(request: HttpRequest, slug: str, limit: int = 20) -> list[dict[str, Any]]:
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    builds = QueueBuild.objects.filter(project=project).select_related("project").order_by("-id")
    return [queue_job_out(build) for build in builds[: max(1, min(limit, 200))]]


@router.post(
    "/projects/{slug}/retrain",
    response={202: RetrainOut, 403: ErrorOut, 404: ErrorOut},
    summary="Retrain the project's model in a worker (reviewers); one run at a time per project",
)
def retrain(request: HttpRequest, slug: str) -> Status[Any]:
    """Queue a training run, or join the one already queued or training."""
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    before = TrainingRun.objects.filter(project=project).order_by("-id").values_list("id", flat=True).first()
    run = services.training_run_request(project=project, trigger=TrainingTrigger.API, user=request.auth)
    coalesced = before is not None and run.pk == before
    return Status(202, {"job_id": training_job_id(run), "state": run.state, "coalesced": coalesced})


@router.get(
    "/projects/{slug}/models",
    response={200: list[ModelVersionOut], 403: ErrorOut, 404: ErrorOut},
    summary="List the project's model versions, newest first, with their time-split metrics (reviewers)",
)
def model_version_list(request: HttpRequest, slug: str) -> list[dict[str, Any]]:
    project, _ = labeling_selectors.project_get_for_user(
        user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER
    )
    versions = ModelVersion.objects.filter(project=project).order_by("-number")
    return [
        {
            "number": version.number,
            "status": version.status,
            "featurizer": version.featurizer,
            "feature_version": version.feature_version,
            "algorithm": version.algorithm,
            "params": version.params,
            "seed": version.seed,
            "training_counts": version.training_counts,
            "holdout": {
                "size": version.holdout.get("size", 0),
                "cutoff": version.cutoff,
                "share": version.holdout.get("share"),
                "support": version.holdout.get("support", {}),
            },
            "metrics": version.metrics,
            "random_split_metrics": version.random_split_metrics,
            "artifact_sha256": version.artifact_sha256,
            "created_at": version.created_at,
            "trained_at": version.trained_at,
            "published_at": version.published_at,
        }
        for version in versions
    ]
