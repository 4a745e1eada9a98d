"""Retraining and model versions in the JSON API: who may ask, single-flight, following the job, the list."""

from __future__ import annotations

import pytest

from labeling import services as labeling_services
from labeling.models import JobState
from models_app import services
from models_app.models import TrainingRun

from .factories import labeled_project

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path):
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


@pytest.fixture
def bearer(users):
    def make(role: str) -> dict[str, str]:
        _, raw = labeling_services.api_token_create(user=users[role])
        return {"authorization": f"Bearer {raw}"}

    return make


def test_only_reviewers_and_admins_may_retrain(client, project, users, bearer):
    url = f"{API}/projects/{project.slug}/retrain"
    assert client.post(url).status_code == 401
    assert client.post(url, headers=bearer("outsider")).status_code == 404
    assert client.post(url, headers=bearer("annotator")).status_code == 403
    assert not TrainingRun.objects.exists()
    response = client.post(url, headers=bearer("reviewer"))
    assert response.status_code == 202
    body = response.json()
    run = TrainingRun.objects.get()
    assert body == {"job_id": f"train-{run.pk}", "state": "queued", "coalesced": False}
    again = client.post(url, headers=bearer("admin")).json()
    assert again == {**body, "coalesced": True}
    assert TrainingRun.objects.count() == 1


def test_a_training_job_is_followed_at_the_jobs_endpoint(client, project, users, bearer):
    labeled_project(project, users["annotator"])
    job_id = client.post(f"{API}/projects/{project.slug}/retrain", headers=bearer("reviewer")).json()["job_id"]
    queued = client.get(f"{API}/jobs/{job_id}", headers=bearer("reviewer")).json()
    assert (queued["id"], queued["kind"], queued["state"], queued["progress"]) == (job_id, "train", "queued", 0.0)
    assert client.get(f"{API}/jobs/{job_id}", headers=bearer("annotator")).status_code == 403
    assert client.get(f"{API}/jobs/{job_id}", headers=bearer("outsider")).status_code == 404
    assert client.get(f"{API}/jobs/train-999999", headers=bearer("reviewer")).status_code == 404
    assert client.get(f"{API}/jobs/not-a-job", headers=bearer("reviewer")).status_code == 404

    services.training_run_execute(run_id=int(job_id.removeprefix("train-")))
    done = client.get(f"{API}/jobs/{job_id}", headers=bearer("reviewer")).json()
    assert done["state"] == JobState.SUCCEEDED and done["progress"] == 1.0 and done["model_version"] == 1

    listed = client.get(f"{API}/projects/{project.slug}/models", headers=bearer("reviewer"))
    assert listed.status_code == 200
    (version,) = listed.json()
    # 24 holdout examples are too few for the gate (30), so v1 is rejected and does not serve.
    assert version["number"] == 1 and version["status"] == "rejected"
    assert {"macro_f1", "accuracy", "per_class"} <= set(version["metrics"])
    assert set(version["metrics"]["per_class"]) == {"spam", "ham"}
    assert version["holdout"]["size"] == 24 and version["holdout"]["cutoff"]
    assert client.get(f"{API}/projects/{project.slug}/models", headers=bearer("annotator")).status_code == 403


def test_import_jobs_keep_their_plain_numbers_at_the_jobs_endpoint(client, project, users, bearer):
    from tests.labeling.factories import run_import

    job = run_import(project, "text\nhello\n")
    assert client.get(f"{API}/jobs/{job.pk}", headers=bearer("admin")).json()["id"] == job.pk
    assert client.get(f"{API}/jobs/import-{job.pk}", headers=bearer("admin")).json()["id"] == job.pk
