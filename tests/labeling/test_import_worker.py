"""An import job queued by the web process runs in a real Celery worker process."""

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
