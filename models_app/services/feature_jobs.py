"""Featurizing jobs: compute a project's missing vectors in a worker, with progress, heartbeats and a sweeper."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db.models import F
from django.utils import timezone

from labeling.models import JobState, Project
from models_app.models import FeatureJob
from models_app.project_settings import learning_settings_get

from .feature_shards import FeatureStoreError
from .features import feature_set_get_or_create, features_compute, featurizer_build
from .jobs import stale_jobs_sweep

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Progress and heartbeats are written at most this often while texts are being featurized.
PROGRESS_INTERVAL_SECONDS = 2.0
ERROR_WORKER_LOST = "The worker featurizing these examples stopped; the job was started again ({attempt} of {limit})."
ERROR_WORKER_LOST_FINAL = "The worker featurizing these examples stopped {limit} times; the job was abandoned."
ERROR_UNEXPECTED = (
    "Featurizing stopped on an unexpected error ({error}); the shards written so far are kept and running the job "
    "again featurizes only what is missing."
)
MESSAGE_PROGRESS = "Featurized {done:,} of {total:,} examples"
MESSAGE_DONE = "Featurized {written:,} new examples; {rows:,} examples have vectors in {version}."
MESSAGE_NOTHING_NEW = "Nothing to featurize: all {rows:,} examples already have vectors in {version}."


def feature_job_create(
    *, project: Project, featurizer_name: str, params: dict[str, Any] | None = None, user: Any = None
) -> FeatureJob:
    """Create a queued job that featurizes the project's examples without vectors; enqueue it with feature_job_enqueue.

    The name and params are checked here (FeatureStoreError). A job for the same featurizer and params that is still
    queued is returned instead of a second one: when it runs it featurizes every example missing by then.
    """
    params = dict(params or {})
    featurizer_build(name=featurizer_name, params=params)
    waiting = FeatureJob.objects.filter(project=project, featurizer=featurizer_name, state=JobState.QUEUED)
    for job in waiting.order_by("id"):
        if job.params == params:
            return job
    return FeatureJob.objects.create(
        project=project,
        featurizer=featurizer_name,
        params=params,
        created_by=user if getattr(user, "pk", None) else None,
    )


def feature_job_enqueue(*, job: FeatureJob) -> None:
    """Queue the job for a worker once the current transaction commits."""
    from models_app.tasks import feature_job_run_task

    feature_job_run_task.delay_on_commit(job.pk)


def feature_job_request(*, project: Project, user: Any = None) -> FeatureJob:
    """Featurize the project's new examples with its configured featurizer (learning settings) in a worker."""
    job = feature_job_create(project=project, featurizer_name=learning_settings_get(project).featurizer, user=user)
    feature_job_enqueue(job=job)
    return job


def feature_job_claim(*, job_id: int) -> bool:
    """Move a queued job to running; return False when another worker has it, it is finished or it is gone."""
    now = timezone.now()
    claimed = FeatureJob.objects.filter(pk=job_id, state=JobState.QUEUED).update(
        state=JobState.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, message=""
    )
    return claimed == 1


def feature_job_run(*, job_id: int, on_progress: Callable[[FeatureJob], None] | None = None) -> FeatureJob | None:
    """Claim and run one featurizing job; a job that is not queued is returned as it is (None when deleted)."""
    if not feature_job_claim(job_id=job_id):
        return FeatureJob.objects.filter(pk=job_id).first()
    job = FeatureJob.objects.select_related("project").get(pk=job_id)
    try:
        featurizer = featurizer_build(name=job.featurizer, params=job.params)
        feature_set = feature_set_get_or_create(project=job.project, featurizer=featurizer)
        job.feature_set = feature_set
        job.save(update_fields=["feature_set"])
        written = features_compute(
            feature_set=feature_set, featurizer=featurizer, on_progress=_JobProgress(job, on_progress)
        )
        job.result = {
            "feature_set_id": feature_set.pk,
            "version": feature_set.version,
            "examples_featurized": written,
            "rows": feature_set.rows,
        }
        template = MESSAGE_DONE if written else MESSAGE_NOTHING_NEW
        _finish(job, state=JobState.SUCCEEDED, message=template.format(**job.result, written=written))
    except FeatureStoreError as exc:
        _finish(job, state=JobState.FAILED, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - the job row must always say how it ended
        logger.exception("feature job %s failed", job.pk)
        _finish(job, state=JobState.FAILED, message=ERROR_UNEXPECTED.format(error=type(exc).__name__))
    return job


class _JobProgress:
    """Write progress and a heartbeat to the job row as texts are featurized, at most every couple of seconds."""

    def __init__(self, job: FeatureJob, on_progress: Callable[[FeatureJob], None] | None) -> None:
        self.job = job
        self.on_progress = on_progress
        self.last_saved = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last_saved < PROGRESS_INTERVAL_SECONDS and done < total:
            return
        self.last_saved = now
        self.job.progress = min(done / total, 0.99) if total else 0.0
        self.job.message = MESSAGE_PROGRESS.format(done=done, total=total)
        self.job.heartbeat_at = timezone.now()
        FeatureJob.objects.filter(pk=self.job.pk, state=JobState.RUNNING).update(
            progress=self.job.progress, message=self.job.message, heartbeat_at=self.job.heartbeat_at
        )
        if self.on_progress is not None:
            self.on_progress(self.job)


def _finish(job: FeatureJob, *, state: str, message: str) -> None:
    job.state = state
    job.message = message
    job.finished_at = timezone.now()
    job.heartbeat_at = job.finished_at
    if state == JobState.SUCCEEDED:
        job.progress = 1.0
    FeatureJob.objects.filter(pk=job.pk).update(
        state=job.state,
        message=job.message,
        result=job.result,
        progress=job.progress,
        finished_at=job.finished_at,
        heartbeat_at=job.heartbeat_at,
    )


def feature_jobs_sweep(*, now: datetime | None = None) -> int:
    """Requeue running jobs whose worker stopped sending heartbeats; fail them after MAX_ATTEMPTS."""
    return stale_jobs_sweep(
        FeatureJob,
        enqueue=lambda job: feature_job_enqueue(job=job),
        lost=ERROR_WORKER_LOST,
        lost_final=ERROR_WORKER_LOST_FINAL,
        now=now,
        attempt_offset=1,
        max_attempts=MAX_ATTEMPTS,
    )
