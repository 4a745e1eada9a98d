"""Orchestration of the data flywheel across apps: label → retrain → evaluate → gate → publish → rescore → queue.

Each step is added here as the room that owns it arrives; imports are queued by the labeling services, and the
rooms call in here lazily (inside functions), so importing `labeling` never imports `models_app`.
"""

from __future__ import annotations

from labeling.models import ImportJob
from models_app.models import FeatureJob
from models_app.services import feature_job_request


def import_succeeded(*, job: ImportJob) -> FeatureJob | None:
    """Featurize the examples an import added, with the project's configured featurizer, in a worker.

    Runs once the import's examples are committed; an import that added nothing starts nothing.
    """
    if not (job.result or {}).get("examples_created"):
        return None
    return feature_job_request(project=job.project, user=job.created_by)
