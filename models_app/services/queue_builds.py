"""Queue rebuilds as jobs: requested after each new model, on demand or after an import; run in a worker.

Single-flight per project like training (a database constraint), with a follow-up when asked again while one
runs, progress and a heartbeat on the row, and a sweeper that requeues builds whose worker died. The slice
itself is computed by `queue_plan` and swapped in by `labeling.services.queue_slice_replace`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from labeling.models import JobState, Project, QueueItem, QueueState
from labeling.services import queue_slice_replace
from models_app.models import QueueBuild

from .jobs import single_flight_request, stale_jobs_sweep
from .queue_plan import queue_plan

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
MESSAGE_QUEUED = "Waiting for a worker."
MESSAGE_WRITING = "Putting {count:,} items at the front of the queue."
MESSAGE_DONE = "Ranked {count:,} items from {pool:,} ready examples{model}: {mix}."
MESSAGE_COLD = " (no model yet: exploration first)"
MESSAGE_EMPTY = "Nothing to rank: no examples are waiting in the queue."
MESSAGE_FOLLOW_UP = "Another rebuild was asked for meanwhile: it is queued."
ERROR_WORKER_LOST = "The worker stopped while rebuilding (attempt {attempt} of {limit}); the build was queued again."
ERROR_WORKER_LOST_FINAL = "The worker stopped while rebuilding {limit} times; the build was given up."
ERROR_UNEXPECTED = "The rebuild failed unexpectedly ({error}); the worker log has the details."
ProgressCallback = Callable[[QueueBuild], None]


def queue_build_request(*, project: Project, trigger: str, user: Any = None) -> QueueBuild:
    """Queue a rebuild, or coalesce into the active one (a running build gets one follow-up); single-flight."""
    return single_flight_request(
        QueueBuild,
        project=project,
        enqueue=lambda build: queue_build_enqueue(build=build),
        trigger=trigger,
        requested_by_id=getattr(user, "pk", None),
        message=MESSAGE_QUEUED,
    )


def queue_build_enqueue(*, build: QueueBuild) -> None:
    """Send the build to a worker once the row is committed."""
    from models_app.tasks import queue_build_execute_task

    queue_build_execute_task.delay_on_commit(build.pk)


def queue_build_claim(*, build_id: int) -> bool:
    """Move a queued build to running; False when another worker has it or it already ended."""
    now = timezone.now()
    return bool(
        QueueBuild.objects.filter(pk=build_id, state=JobState.QUEUED).update(
            state=JobState.RUNNING, started_at=now, heartbeat_at=now, progress=0.0
        )
    )


def queue_builds_sweep(*, now: datetime | None = None) -> int:
    """Requeue running builds whose heartbeat stopped (their worker died); give up after MAX_ATTEMPTS."""
    return stale_jobs_sweep(
        QueueBuild,
        enqueue=lambda build: queue_build_enqueue(build=build),
        lost=ERROR_WORKER_LOST,
        lost_final=ERROR_WORKER_LOST_FINAL,
        now=now,
        reset={"progress": 0.0},
        max_attempts=MAX_ATTEMPTS,
    )


def queue_build_execute(*, build_id: int, on_progress: ProgressCallback | None = None) -> QueueBuild | None:
    """Claim and carry out one queued build; the row always says how it ended."""
    if not queue_build_claim(build_id=build_id):
        return QueueBuild.objects.filter(pk=build_id).first()
    build = QueueBuild.objects.select_related("project").get(pk=build_id)
    build.attempts += 1
    QueueBuild.objects.filter(pk=build.pk).update(attempts=build.attempts)
    try:
        message = _rebuild(build, _stepper(build, on_progress))
    except Exception as exc:  # noqa: BLE001 - the build row must always say how it ended
        logger.exception("queue build %s failed", build.pk)
        _finish(build, state=JobState.FAILED, message=ERROR_UNEXPECTED.format(error=type(exc).__name__))
        return build
    _finish(build, state=JobState.SUCCEEDED, message=message)
    return build


def _finish(build: QueueBuild, *, state: str, message: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        follow_up = QueueBuild.objects.filter(pk=build.pk).values_list("follow_up", flat=True).first()
        text = f"{message} {MESSAGE_FOLLOW_UP}" if follow_up else message
        QueueBuild.objects.filter(pk=build.pk).update(
            state=state,
            message=text,
            progress=1.0 if state == JobState.SUCCEEDED else build.progress,
            finished_at=now,
            heartbeat_at=now,
        )
        if follow_up:
            queue_build_request(project=build.project, trigger=build.trigger, user=build.requested_by)
    build.refresh_from_db()


def _stepper(build: QueueBuild, on_progress: ProgressCallback | None) -> Callable[[float, str], None]:
    """Return a function that records progress, a message and a heartbeat on the build."""

    def step(progress: float, message: str) -> None:
        build.progress = round(min(max(progress, 0.0), 1.0), 4)
        build.message = message
        QueueBuild.objects.filter(pk=build.pk).update(
            progress=build.progress, message=message, heartbeat_at=timezone.now()
        )
        if on_progress is not None:
            on_progress(build)

    return step


def _rebuild(build: QueueBuild, step: Callable[[float, str], None]) -> str:
    project = build.project
    plan = queue_plan(project=project, step=step)
    QueueBuild.objects.filter(pk=build.pk).update(
        pool_size=plan.pool_size,
        model_version=plan.model,
        model_number=plan.model.number if plan.model else None,
    )
    if not plan.pool_size and not plan.items:
        QueueBuild.objects.filter(pk=build.pk).update(composition=plan.composition, timings=plan.timings)
        return MESSAGE_EMPTY
    step(0.9, MESSAGE_WRITING.format(count=len(plan.items)))
    started = time.perf_counter()
    result = queue_slice_replace(
        project=project,
        items=plan.items,
        model_number=plan.model.number if plan.model else None,
        curriculum=plan.curriculum,
    )
    plan.timings["write"] = round(time.perf_counter() - started, 4)
    plan.composition["written"] = {
        "ranked": result.ranked,
        "re_review": result.re_review,
        "demoted": result.demoted,
        "curriculum": result.curriculum,
    }
    plan.composition["ready_by_reason"] = ready_by_reason(project=project)
    QueueBuild.objects.filter(pk=build.pk).update(
        slice_size=len(plan.items), composition=plan.composition, timings=plan.timings
    )
    picked = plan.composition.get("picked", {})
    mix = ", ".join(f"{count:,} {name.replace('_', ' ')}" for name, count in picked.items()) or "nothing"
    return MESSAGE_DONE.format(
        count=len(plan.items), pool=plan.pool_size, model="" if plan.model else MESSAGE_COLD, mix=mix
    )


def ready_by_reason(*, project: Project) -> dict[str, int]:
    """Count ready queue rows per reason code (what annotators will be served, by why)."""
    rows = (
        QueueItem.objects.filter(project=project, state=QueueState.READY)
        .values_list("reason_code")
        .order_by()
        .annotate(n=Count("id"))
    )
    return dict(rows)
