"""Celery tasks of the models room: thin wrappers that take ids and call one service."""

from __future__ import annotations

from celery import shared_task

from models_app import services


@shared_task(acks_late=True)
def feature_job_run_task(job_id: int) -> None:
    """Run a queued featurizing job; a job already claimed, finished or deleted is left alone."""
    services.feature_job_run(job_id=job_id)


@shared_task
def feature_jobs_sweep_task() -> int:
    """Requeue featurizing jobs whose worker died (a killed worker's task is not redelivered)."""
    return services.feature_jobs_sweep()


@shared_task(acks_late=True)
def training_run_execute_task(run_id: int) -> None:
    """Train one queued run; a run already claimed or finished is left alone, so redelivery is harmless."""
    services.training_run_execute(run_id=run_id)


@shared_task
def training_runs_sweep_task() -> int:
    """Requeue training runs whose worker died mid-training (a SIGKILLed worker's task is not redelivered)."""
    return services.training_runs_sweep()


@shared_task
def training_triggers_check_task() -> int:
    """Start retraining where enough new human labels arrived or the schedule is due."""
    return len(services.training_triggers_check())


@shared_task(acks_late=True)
def queue_build_execute_task(build_id: int) -> None:
    """Rebuild one project's queue slice; a build already claimed or finished is left alone."""
    services.queue_build_execute(build_id=build_id)


@shared_task
def queue_builds_sweep_task() -> int:
    """Requeue queue builds whose worker died mid-build."""
    return services.queue_builds_sweep()


@shared_task(acks_late=True)
def prelabel_job_execute_task(job_id: int) -> None:
    """Pre-label with an LLM; a job already claimed, finished or cancelled is left alone."""
    services.prelabel_job_execute(job_id=job_id)


@shared_task
def prelabel_jobs_sweep_task() -> int:
    """Requeue pre-labeling jobs whose worker died mid-job."""
    return services.prelabel_jobs_sweep()


@shared_task(acks_late=True)
def feedback_ingest_task(log_id: int) -> None:
    """Queue a prediction call's uncertain inputs as feedback examples; a repeat finds them claimed and stops."""
    services.feedback_ingest(log_id=log_id)


@shared_task
def feedback_sweep_task() -> int:
    """Ingest feedback whose task was lost."""
    return services.feedback_sweep()


@shared_task
def prediction_logs_prune_task() -> int:
    """Delete old prediction logs whose feedback is queued."""
    return services.prediction_logs_prune()
