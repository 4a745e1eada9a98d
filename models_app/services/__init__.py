"""Writes for the models room: the feature store, its featurizing jobs, retraining, and ranking the queue."""

from .feature_jobs import (
    feature_job_claim,
    feature_job_create,
    feature_job_enqueue,
    feature_job_request,
    feature_job_run,
    feature_jobs_sweep,
)
from .feature_shards import FeatureStoreError
from .features import (
    FeatureMatrix,
    feature_set_featurizer,
    feature_set_get_or_create,
    feature_set_missing_ids,
    features_compute,
    features_load,
    features_verify,
    featurizer_build,
)
from .prelabel import (
    PrelabelError,
    prelabel_job_cancel,
    prelabel_job_execute,
    prelabel_job_request,
    prelabel_jobs_sweep,
)
from .queue_builds import (
    queue_build_claim,
    queue_build_enqueue,
    queue_build_execute,
    queue_build_request,
    queue_builds_sweep,
    ready_by_reason,
)
from .queue_plan import queue_plan, ranking_model_get
from .training import (
    human_label_count,
    training_rows,
    training_run_claim,
    training_run_enqueue,
    training_run_execute,
    training_run_request,
    training_runs_sweep,
    training_triggers_check,
)
from .trust import trust_get, trust_pairs, trust_preview

__all__ = [
    "PrelabelError",
    "prelabel_job_cancel",
    "prelabel_job_execute",
    "prelabel_job_request",
    "prelabel_jobs_sweep",
    "trust_get",
    "trust_pairs",
    "trust_preview",
    "queue_build_claim",
    "queue_build_enqueue",
    "queue_build_execute",
    "queue_build_request",
    "queue_builds_sweep",
    "queue_plan",
    "ranking_model_get",
    "ready_by_reason",
    "human_label_count",
    "training_rows",
    "training_run_claim",
    "training_run_enqueue",
    "training_run_execute",
    "training_run_request",
    "training_runs_sweep",
    "training_triggers_check",
    "FeatureMatrix",
    "FeatureStoreError",
    "feature_job_claim",
    "feature_job_create",
    "feature_job_enqueue",
    "feature_job_request",
    "feature_job_run",
    "feature_jobs_sweep",
    "feature_set_featurizer",
    "feature_set_get_or_create",
    "feature_set_missing_ids",
    "features_compute",
    "features_load",
    "features_verify",
    "featurizer_build",
]
