"""Writes for the models room: the feature store, its featurizing jobs, and retraining."""

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

__all__ = [
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
