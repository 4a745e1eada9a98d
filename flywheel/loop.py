"""Orchestration of the data flywheel across apps: label → retrain → evaluate → gate → publish → rescore → queue.

Each step is added here as the room that owns it arrives; imports are queued by the labeling services, and the
rooms call in here lazily (inside functions), so importing `labeling` never imports `models_app`.
"""

from __future__ import annotations

from labeling.models import ImportJob
from models_app.models import FeatureJob, GateDecision, ModelVersion, PrelabelJob, QueueBuild, QueueBuildTrigger
from models_app.project_settings import serving_settings_get
from models_app.services import (
    feature_job_request,
    model_version_gate,
    model_version_publish,
    queue_build_request,
    ranking_model_get,
)


def import_succeeded(*, job: ImportJob) -> FeatureJob | None:
    """Featurize the examples an import added, with the project's configured featurizer, in a worker.

    Runs once the import's examples are committed; an import that added nothing starts nothing.
    """
    if not (job.result or {}).get("examples_created"):
        return None
    feature_job = feature_job_request(project=job.project, user=job.created_by)
    if ranking_model_get(project=job.project) is None:
        # Cold start: spread the first items over the data's groups (and the LLM's doubts) instead of pure chance.
        queue_build_request(project=job.project, trigger=QueueBuildTrigger.IMPORT, user=job.created_by)
    return feature_job


def model_version_evaluated(*, version: ModelVersion) -> GateDecision:
    """Put a freshly evaluated version through the gate; publish it when it passes and the project auto-publishes.

    A version that fails is rejected and the published one keeps serving.
    """
    decision = model_version_gate(version=version)
    if decision.passed and serving_settings_get(version.project).auto_publish:
        model_version_publish(version=version)
    return decision


def model_version_published(*, version: ModelVersion, user: object = None) -> QueueBuild:
    """Re-rank the queue with the model that now serves (after a manual publish or rollback)."""
    return queue_build_request(project=version.project, trigger=QueueBuildTrigger.MODEL, user=user)


def model_version_trained(*, version: ModelVersion) -> QueueBuild:
    """Re-rank the queue with the new model, so the next labels go where it is unsure or wrong."""
    return queue_build_request(project=version.project, trigger=QueueBuildTrigger.MODEL)


def prelabel_finished(*, job: PrelabelJob) -> QueueBuild:
    """Re-rank the queue with the new LLM labels: what the LLM doubts or disagrees with the model on goes first."""
    return queue_build_request(project=job.project, trigger=QueueBuildTrigger.PRELABEL, user=job.requested_by)
