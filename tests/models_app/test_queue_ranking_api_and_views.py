"""The queue ranking in the JSON API and on its page: who may rebuild, following a build, settings, escaping."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling import services as labeling_services
from labeling.models import Example, JobState
from models_app import services
from models_app.models import QueueBuild, QueueBuildTrigger
from models_app.project_settings import queue_settings_get

from .factories import examples_create

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


def _pool(project, count=30):
    examples = examples_create(project, [f"waiting text {n}" for n in range(count)])
    labeling_services.queue_fill(project=project)
    return examples


def test_only_reviewers_and_admins_may_rebuild_the_queue_and_requests_coalesce(client, project, users, bearer):
    url = f"{API}/projects/{project.slug}/queue/rebuild"
    assert client.post(url).status_code == 401
    assert client.post(url, headers=bearer("outsider")).status_code == 404
    assert client.post(url, headers=bearer("annotator")).status_code == 403
    assert not QueueBuild.objects.exists()
    body = client.post(url, headers=bearer("reviewer")).json()
    build = QueueBuild.objects.get()
    assert body == {"job_id": f"queue-{build.pk}", "state": "queued", "coalesced": False}
    assert client.post(url, headers=bearer("admin")).json() == {**body, "coalesced": True}
    assert build.trigger == QueueBuildTrigger.API


def test_a_rebuild_is_followed_at_the_jobs_endpoint_and_listed(client, project, users, bearer):
    _pool(project)
    job_id = client.post(f"{API}/projects/{project.slug}/queue/rebuild", headers=bearer("reviewer")).json()["job_id"]
    queued = client.get(f"{API}/jobs/{job_id}", headers=bearer("reviewer")).json()
    assert (queued["kind"], queued["state"]) == ("queue", "queued")
    assert client.get(f"{API}/jobs/{job_id}", headers=bearer("annotator")).status_code == 403
    assert client.get(f"{API}/jobs/{job_id}", headers=bearer("outsider")).status_code == 404
    assert client.get(f"{API}/jobs/queue-999999", headers=bearer("reviewer")).status_code == 404
    services.queue_build_execute(build_id=int(job_id.removeprefix("queue-")))
    done = client.get(f"{API}/jobs/{job_id}", headers=bearer("reviewer")).json()
    assert done["state"] == "succeeded" and done["progress"] == 1.0
    assert done["pool_size"] == 30 and done["slice_size"] == 30 and done["model_version"] is None
    assert done["composition"]["picked"] == {"exploration": 30}
    listed = client.get(f"{API}/projects/{project.slug}/queue/builds", headers=bearer("reviewer")).json()
    assert [row["id"] for row in listed] == [job_id]
    assert client.get(f"{API}/projects/{project.slug}/queue/builds", headers=bearer("annotator")).status_code == 403


def test_the_ranking_page_shows_the_latest_slice_by_source_and_the_history(client_for, project, users):
    _pool(project)
    build = services.queue_build_request(project=project, trigger=QueueBuildTrigger.BUTTON)
    services.queue_build_execute(build_id=build.pk)
    url = reverse("models_app:queue_ranking", kwargs={"slug": project.slug})
    assert client_for(users["annotator"]).get(url).status_code == 403
    page = client_for(users["reviewer"]).get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Latest slice by source" in html and "Across model versions" in html
    assert "30 items from 30 waiting examples" in html and "before any model" in html
    assert "Save and rebuild" not in html  # settings are for admins
    assert "Save and rebuild" in client_for(users["admin"]).get(url).content.decode()


def test_the_rebuild_button_queues_a_build_and_its_progress_polls_until_done(client_for, project, users):
    _pool(project)
    client = client_for(users["reviewer"])
    response = client.post(
        reverse("models_app:queue_rebuild", kwargs={"slug": project.slug}), headers={"HX-Request": "true"}
    )
    build = QueueBuild.objects.get()
    assert response.status_code == 200 and 'id="queue-build"' in response.content.decode()
    assert 'hx-trigger="every 1s"' in response.content.decode()
    poll = reverse("models_app:queue_build", kwargs={"slug": project.slug, "build_id": build.pk})
    assert client.get(poll, headers={"HX-Request": "true"}).status_code == 200
    services.queue_build_execute(build_id=build.pk)
    finished = client.get(poll, headers={"HX-Request": "true"})
    assert finished.status_code == 286 and "queue-build-finished" in finished.headers["HX-Trigger"]
    assert "Ranked 30 items" in finished.content.decode()


def test_admins_change_the_queue_settings_with_clear_errors_and_a_rebuild(client_for, project, users):
    url = reverse("models_app:queue_settings", kwargs={"slug": project.slug})
    assert client_for(users["reviewer"]).post(url, {"slice_size": "100"}).status_code == 403
    admin = client_for(users["admin"])
    bad = admin.post(url, {"slice_size": "5", "uncertainty": "margin"})
    assert bad.status_code == 400 and "slice_size must be between 20 and 20000." in bad.content.decode()
    assert queue_settings_get(project).slice_size == 500 and not QueueBuild.objects.exists()
    zero = {f"quota_{name}": "0" for name in queue_settings_get(project).quotas()}
    assert "At least one source needs a share" in admin.post(url, zero).content.decode()
    ok = admin.post(url, {"slice_size": "100", "uncertainty": "margin", "quota_exploration": "0.2"})
    assert ok.status_code == 303
    project.refresh_from_db()
    saved = queue_settings_get(project)
    assert (saved.slice_size, saved.uncertainty, saved.quota_exploration) == (100, "margin", 0.2)
    assert QueueBuild.objects.get().trigger == QueueBuildTrigger.SETTINGS


def test_text_from_the_data_in_a_reason_is_escaped_on_the_annotate_page(client_for, project, users):
    examples = _pool(project, 5)
    Example.objects.filter(pk__in=[e.pk for e in examples]).update(meta={"channel": "<script>alert(1)</script>"})
    project.settings = {**project.settings, "queue": {"stratify_by": "channel", "slice_size": 20}}
    project.save(update_fields=["settings"])
    build = services.queue_build_request(project=project, trigger=QueueBuildTrigger.BUTTON)
    assert services.queue_build_execute(build_id=build.pk).state == JobState.SUCCEEDED
    page = client_for(users["annotator"]).get(reverse("labeling:annotate", kwargs={"slug": project.slug}))
    html = page.content.decode()
    assert "within &lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
