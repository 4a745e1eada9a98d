"""Celery tasks of the labeling room: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from labeling import services


@shared_task(acks_late=True)
def import_job_run_task(job_id: int) -> None:
    """Run a queued import; a job already claimed or finished is left alone, so redelivery is harmless."""
    services.import_job_run(job_id=job_id)


@shared_task
def import_jobs_sweep_task() -> int:
    """Requeue imports whose worker died (a killed worker's task is not redelivered)."""
    return services.import_jobs_sweep()
