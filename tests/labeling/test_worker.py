"""Jobs queued by the web process run in a real Celery worker process: imports, then the queue they fill."""

from __future__ import annotations

from pathlib import Path

import pytest

from labeling import services
from labeling.models import Annotation, Example, ImportJob, ImportSource

DEMO = Path(__file__).resolve().parents[2] / "demo" / "youtube_spam" / "Youtube01-Psy.csv"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_import_job_round_trips_through_a_real_worker(project, celery_worker_process, wait_for_job):
    job = services.import_job_create(
        project=project,
        source=ImportSource.UPLOAD,
        filename=DEMO.name,
        options=services.ImportOptions(label_map={"1": "spam", "0": "ham"}),
        path=DEMO,
    )
    services.import_job_enqueue(job=job)

    job = wait_for_job(ImportJob, job.pk, worker=celery_worker_process)

    assert job.state == "succeeded", job.message
    assert job.progress == 1.0
    assert job.started_at is not None and job.finished_at >= job.started_at
    assert job.result["rows_read"] == 350
    assert Example.objects.filter(project=project).count() == job.result["examples_created"] > 300
    assert (
        Annotation.objects.filter(example__project=project, kind="imported").count()
        == job.result["annotations_created"]
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_imported_examples_are_claimable_over_the_api_once_the_worker_finishes(
    project, users, celery_worker_process, wait_for_job
):
    from django.test import Client

    token = services.api_token_create(user=users["annotator"])[1]
    headers = {"authorization": f"Bearer {token}"}
    job = services.import_job_create(
        project=project,
        source=ImportSource.API,
        filename=DEMO.name,
        options=services.ImportOptions(ignore_labels=True),
        path=DEMO,
    )
    services.import_job_enqueue(job=job)
    job = wait_for_job(ImportJob, job.pk, worker=celery_worker_process)

    assert job.state == "succeeded", job.message
    assert job.result["queued"] == job.result["examples_created"]
    claim = Client().post("/api/v1/projects/reviews/queue/claim", headers=headers)
    assert claim.status_code == 200
    assert Example.objects.get(pk=claim.json()["example_id"]).import_job_id == job.pk


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_returns_expired_leases_to_the_queue(project, users, celery_worker_process):
    import time
    from datetime import timedelta

    from django.utils import timezone

    from labeling.models import QueueItem
    from labeling.tasks import queue_leases_expire_task

    example = Example.objects.create(project=project, text="a comment", content_hash="h1")
    services.queue_fill(project=project)
    claim = services.queue_claim_next(project=project, user=users["annotator"])
    QueueItem.objects.filter(pk=claim.item.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    queue_leases_expire_task.delay()

    deadline = time.monotonic() + 30
    while QueueItem.objects.get(pk=claim.item.pk).state != "ready":
        assert time.monotonic() < deadline, celery_worker_process.log_path.read_text()[-3000:]
        time.sleep(0.2)
    item = QueueItem.objects.get(pk=claim.item.pk)
    assert item.example_id == example.pk and item.lease_owner_id is None and item.lease_id is None
