"""Reads for the models room: feature sets and jobs, model versions, training runs, queue builds, pre-labeling."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from labeling.models import Project
from models_app.models import FeatureJob, FeatureSet, ModelVersion, PrelabelJob, QueueBuild, TrainingRun


def feature_set_list(*, project: Project) -> QuerySet[FeatureSet]:
    """The project's feature sets, newest first, each with `shard_count`."""
    return FeatureSet.objects.filter(project=project).annotate(shard_count=Count("shards")).order_by("-id")


def feature_set_get(*, project: Project, version: str) -> FeatureSet | None:
    return FeatureSet.objects.filter(project=project, version=version).first()


def feature_job_list(*, project: Project) -> QuerySet[FeatureJob]:
    """The project's featurizing jobs, newest first."""
    return FeatureJob.objects.filter(project=project).select_related("feature_set").order_by("-id")


def feature_job_get(*, job_id: int) -> FeatureJob | None:
    return FeatureJob.objects.select_related("project", "feature_set").filter(pk=job_id).first()


def model_version_list(*, project: Project) -> QuerySet[ModelVersion]:
    """The project's model versions, newest first, without their training params (the list does not show them)."""
    return ModelVersion.objects.filter(project=project).defer("params").order_by("-number")


def model_version_get(*, project: Project, number: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, number=number).first()


def training_run_get(*, project: Project, run_id: int) -> TrainingRun | None:
    """One of the project's training runs, with the version it produced and who asked for it."""
    return (
        TrainingRun.objects.select_related("model_version", "requested_by").filter(project=project, pk=run_id).first()
    )


def training_run_latest(*, project: Project) -> TrainingRun | None:
    """The project's newest training run, whatever its state."""
    return (
        TrainingRun.objects.select_related("model_version", "requested_by")
        .filter(project=project)
        .order_by("-id")
        .first()
    )


def queue_build_list(*, project: Project, limit: int = 20) -> list[QueueBuild]:
    """The project's newest queue builds, newest first."""
    return list(QueueBuild.objects.filter(project=project).select_related("requested_by").order_by("-id")[:limit])


def queue_build_get(*, project: Project, build_id: int) -> QueueBuild | None:
    return QueueBuild.objects.select_related("requested_by").filter(project=project, pk=build_id).first()


def prelabel_job_list(*, project: Project, limit: int = 10) -> list[PrelabelJob]:
    """The project's newest pre-labeling jobs, newest first, with who asked for them."""
    return list(PrelabelJob.objects.filter(project=project).select_related("requested_by").order_by("-id")[:limit])


def prelabel_job_get(*, project: Project, job_id: int) -> PrelabelJob | None:
    return PrelabelJob.objects.select_related("requested_by").filter(project=project, pk=job_id).first()


def prelabel_job_latest(*, project: Project) -> PrelabelJob | None:
    return PrelabelJob.objects.filter(project=project).select_related("requested_by").order_by("-id").first()
