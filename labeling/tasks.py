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


@shared_task
def queue_leases_expire_task() -> int:
    """Return leases nobody renewed to the queue (a closed tab stops its heartbeat)."""
    return services.queue_leases_expire()


@shared_task(acks_late=True)
def queue_overlap_sync_task(project_id: int) -> int:
    """Add or drop queue slots after a project's overlap setting changed."""
    from labeling.models import Project

    project = Project.objects.filter(pk=project_id).first()
    return services.queue_overlap_sync(project=project) if project is not None else 0
