"""Featurizing jobs are claimed once, report progress, follow imports, and the sweeper requeues or fails stale ones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from labeling.models import Example, JobState
from models_app.models import FeatureJob, FeatureSet
from models_app.services import (
    FeatureStoreError,
    feature_job_claim,
    feature_job_create,
    feature_job_run,
    feature_jobs_sweep,
    features_load,
)
from models_app.services.feature_jobs import (
    ERROR_WORKER_LOST,
    ERROR_WORKER_LOST_FINAL,
    MAX_ATTEMPTS,
    MESSAGE_NOTHING_NEW,
    MESSAGE_PROGRESS,
)
from models_app.tasks import feature_jobs_sweep_task
from tests.labeling.factories import run_import

from .factories import examples_create

pytestmark = pytest.mark.django_db

SMALL = {"n_features": 128, "char_ngrams": None}


def test_a_job_featurizes_the_missing_examples_and_reports_progress(project):
    examples = examples_create(project, [f"text number {n}" for n in range(30)])
    job = feature_job_create(project=project, featurizer_name="hashing", params=SMALL)
    seen: list[tuple[float, str]] = []

    job = feature_job_run(job_id=job.pk, on_progress=lambda running: seen.append((running.progress, running.message)))

    assert job.state == JobState.SUCCEEDED and job.progress == 1.0 and job.attempts == 1
    assert job.started_at <= job.finished_at
    assert job.result["examples_featurized"] == job.result["rows"] == 30
    assert (0.0, MESSAGE_PROGRESS.format(done=0, total=30)) in seen
    assert seen[-1][1] == MESSAGE_PROGRESS.format(done=30, total=30)
    feature_set = FeatureSet.objects.get(pk=job.feature_set_id)
    assert feature_set.params["n_features"] == 128
    assert features_load(feature_set=feature_set).ids.tolist() == [example.pk for example in examples]
    stored = FeatureJob.objects.get(pk=job.pk)
    assert stored.state == "succeeded" and stored.progress == 1.0 and stored.message == job.message

    assert feature_job_claim(job_id=job.pk) is False
    assert feature_job_run(job_id=job.pk).attempts == 1
    again = feature_job_run(job_id=feature_job_create(project=project, featurizer_name="hashing", params=SMALL).pk)
    assert again.message == MESSAGE_NOTHING_NEW.format(rows=30, version=feature_set.version)


def test_a_job_still_queued_is_reused_and_bad_featurizers_are_refused(project):
    first = feature_job_create(project=project, featurizer_name="hashing", params=SMALL)
    assert feature_job_create(project=project, featurizer_name="hashing", params=dict(SMALL)).pk == first.pk
    assert feature_job_create(project=project, featurizer_name="hashing", params={"n_features": 64}).pk != first.pk
    with pytest.raises(FeatureStoreError):
        feature_job_create(project=project, featurizer_name="word2vec")
    with pytest.raises(FeatureStoreError):
        feature_job_create(project=project, featurizer_name="hashing", params={"n_grams": 3})


def test_a_job_that_fails_says_why(project, monkeypatch):
    from models_app.services import feature_jobs

    examples_create(project, ["one", "two"])
    job = feature_job_create(project=project, featurizer_name="hashing", params=SMALL)

    def broken(**kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(feature_jobs, "features_compute", broken)
    job = feature_job_run(job_id=job.pk)
    assert job.state == "failed" and "OSError" in job.message and job.finished_at is not None


def test_the_sweeper_requeues_a_job_whose_worker_stopped(project, django_capture_on_commit_callbacks):
    job = feature_job_create(project=project, featurizer_name="hashing", params=SMALL)
    stale = timezone.now() - timedelta(seconds=settings.FLYWHEEL_JOB_STALE_SECONDS + 60)
    FeatureJob.objects.filter(pk=job.pk).update(state=JobState.RUNNING, heartbeat_at=stale, attempts=1)

    with django_capture_on_commit_callbacks() as callbacks:
        assert feature_jobs_sweep() == 1
    job.refresh_from_db()
    assert job.state == "queued" and job.message == ERROR_WORKER_LOST.format(attempt=2, limit=MAX_ATTEMPTS)
    assert len(callbacks) == 1  # the task is sent once the requeue commits
    FeatureJob.objects.filter(pk=job.pk).update(state=JobState.RUNNING, heartbeat_at=timezone.now())
    assert feature_jobs_sweep() == 0

    FeatureJob.objects.filter(pk=job.pk).update(heartbeat_at=stale, attempts=MAX_ATTEMPTS)
    assert feature_jobs_sweep_task() == 1
    job.refresh_from_db()
    assert job.state == "failed" and job.finished_at is not None
    assert job.message == ERROR_WORKER_LOST_FINAL.format(limit=MAX_ATTEMPTS)


def test_the_sweep_runs_on_the_beat_schedule():
    entry = settings.CELERY_BEAT_SCHEDULE["sweep-stuck-feature-jobs"]
    assert entry["task"] == feature_jobs_sweep_task.name


def test_an_import_that_adds_examples_queues_featurizing_with_the_project_featurizer(project):
    project.settings = {"learning": {"featurizer": "minilm"}}
    project.save(update_fields=["settings"])

    first = run_import(project, "text\nfirst comment\nsecond comment\n")
    assert first.state == "succeeded"
    job = FeatureJob.objects.get(project=project)
    assert job.state == "queued" and job.featurizer == "minilm" and job.params == {}

    run_import(project, "text\nthird comment\n")
    run_import(project, "text\nthird comment\n")  # nothing new
    assert FeatureJob.objects.filter(project=project).count() == 1  # the queued job covers the later examples
    assert Example.objects.filter(project=project).count() == 3
