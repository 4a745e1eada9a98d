"""What the background jobs of the models room share: single-flight requests, and requeueing dead ones.

Featurizing jobs, training runs, queue builds and pre-labeling jobs each keep their state, attempts and a heartbeat
on their own row. A worker killed by the OS is not redelivered by the broker, so beat runs a sweep: a running row
whose heartbeat is older than FLYWHEEL_JOB_STALE_SECONDS is queued again (and sent to a worker), or failed once it
has used up its attempts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from labeling.models import JobState

MAX_ATTEMPTS = 3
ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


def stale_jobs_sweep(
    model: type[models.Model],
    *,
    enqueue: Callable[[Any], None],
    lost: str,
    lost_final: str,
    now: datetime | None = None,
    reset: dict[str, Any] | None = None,
    attempt_offset: int = 0,
    max_attempts: int = MAX_ATTEMPTS,
) -> int:
    """Requeue `model`'s running rows whose heartbeat stopped; fail those that used up `max_attempts`; return how many.

    `lost` and `lost_final` are the messages left on the row (formatted with `attempt` and `limit`); `reset` holds
    extra fields to set on a requeued row (e.g. progress back to 0); `attempt_offset` is added to the attempt number
    shown, for jobs that count an attempt only when they are claimed.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.FLYWHEEL_JOB_STALE_SECONDS)
    swept = 0
    for job in model.objects.filter(state=JobState.RUNNING, heartbeat_at__lt=cutoff):
        stale = model.objects.filter(pk=job.pk, state=JobState.RUNNING, heartbeat_at__lt=cutoff)
        if job.attempts >= max_attempts:
            swept += stale.update(state=JobState.FAILED, finished_at=now, message=lost_final.format(limit=max_attempts))
            continue
        with transaction.atomic():
            updated = stale.update(
                state=JobState.QUEUED,
                message=lost.format(attempt=job.attempts + attempt_offset, limit=max_attempts),
                **(reset or {}),
            )
            if updated:
                enqueue(job)
        swept += updated
    return swept


def single_flight_request(
    model: type[models.Model], *, project: Any, enqueue: Callable[[Any], None], **fields: Any
) -> Any:
    """Create a queued `model` row for the project and send it to a worker, or return the active one.

    At most one queued or running row per project is a database constraint, so concurrent requests cannot start two.
    A request while a row is running marks it `follow_up`: it asks for one more run when it ends.
    """
    while True:
        try:
            with transaction.atomic():
                job = model.objects.create(project=project, **fields)
                enqueue(job)
                return job
        except IntegrityError:
            pass
        active = model.objects.filter(project=project, state__in=ACTIVE_STATES).order_by("-id").first()
        if active is None:  # it finished between the insert and this read: ask again
            continue
        if active.state == JobState.RUNNING:
            model.objects.filter(pk=active.pk, state=JobState.RUNNING).update(follow_up=True)
            active.follow_up = True
        return active
