"""A featurizing job queued by the web process runs in a real Celery worker process."""

from __future__ import annotations

import pytest

from models_app.models import FeatureJob, FeatureSet
from models_app.services import feature_job_create, feature_job_enqueue, features_load

from .factories import examples_create


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_feature_job_round_trips_through_a_real_worker(project, celery_worker_process, wait_for_job):
    examples = examples_create(project, [f"worker comment {n}" for n in range(40)])
    job = feature_job_create(project=project, featurizer_name="hashing", params={"n_features": 128})
    feature_job_enqueue(job=job)

    job = wait_for_job(FeatureJob, job.pk, worker=celery_worker_process)

    assert job.state == "succeeded", job.message
    assert job.progress == 1.0 and job.attempts == 1
    assert job.result["examples_featurized"] == 40
    loaded = features_load(feature_set=FeatureSet.objects.get(pk=job.feature_set_id), verify=True)
    assert loaded.ids.tolist() == [example.pk for example in examples]
    assert loaded.matrix.shape == (40, 256)
