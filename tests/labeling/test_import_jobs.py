"""Import jobs are claimed once, and the sweeper requeues or fails jobs whose worker died."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import services
from labeling.models import ImportJob, JobState
from labeling.services.imports import MAX_ATTEMPTS
from tests.labeling.factories import run_import

pytestmark = pytest.mark.django_db


def test_a_job_is_claimed_once_and_a_finished_job_is_not_run_again(project):
    job = run_import(project, "text\nonly once\n")
    assert job.state == "succeeded"
    assert services.import_job_claim(job_id=job.pk) is False
    again = services.import_job_run(job_id=job.pk)
    assert again.state == "succeeded" and again.attempts == 1


def test_the_sweeper_requeues_a_job_whose_worker_stopped(project, django_capture_on_commit_callbacks):
    job = run_import(project, "text\nx\n")
    stale = timezone.now() - timedelta(hours=1)
    ImportJob.objects.filter(pk=job.pk).update(state=JobState.RUNNING, heartbeat_at=stale, attempts=1)
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.import_jobs_sweep() == 1
    job.refresh_from_db()
    assert job.state == "queued" and "started again (2 of 3)" in job.message
    assert len(callbacks) == 1  # the task is sent once the requeue commits
    fresh = timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(state=JobState.RUNNING, heartbeat_at=fresh)
    assert services.import_jobs_sweep() == 0


def test_the_sweeper_gives_up_after_the_last_attempt(project):
    job = run_import(project, "text\nx\n")
    stale = timezone.now() - timedelta(hours=1)
    ImportJob.objects.filter(pk=job.pk).update(state=JobState.RUNNING, heartbeat_at=stale, attempts=MAX_ATTEMPTS)
    assert services.import_jobs_sweep() == 1
    job.refresh_from_db()
    assert job.state == "failed" and job.finished_at is not None
    assert "abandoned" in job.message


def test_a_requeued_job_rerun_adds_only_what_is_missing(project):
    content = "text\n" + "".join(f"row {n}\n" for n in range(30))
    first = run_import(project, content)
    ImportJob.objects.filter(pk=first.pk).update(state=JobState.QUEUED)
    rerun = services.import_job_run(job_id=first.pk)
    assert rerun.state == "succeeded"
    assert rerun.result["examples_created"] == 0 and rerun.result["duplicates"] == 30
