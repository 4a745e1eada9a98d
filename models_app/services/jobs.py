"""What every background job of the models room shares: requeueing the ones whose worker died.

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
from django.db import models, transaction
from django.utils import timezone

from labeling.models import JobState

MAX_ATTEMPTS = 3


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
