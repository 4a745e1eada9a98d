"""Pre-labeling as a service: selections, few-shot neighbours, the model's view, cancelling, the API, routing."""

from __future__ import annotations

import pytest

from labeling import services as labeling_services
from labeling.models import Annotation, AnnotationKind, Example, QueueReason
from models_app import services
from models_app.models import PrelabelJob, PrelabelState, QueueBuild, QueueBuildTrigger, TrainingTrigger
from models_app.services.prelabel import CHUNK, ERROR_FILTER, MESSAGE_NOTHING

from .factories import examples_create, labeled_project

pytestmark = pytest.mark.django_db

API = "/api/v1"
POOL = ["free gift card click {n}", "subscribe to my channel {n}", "love this song {n}", "great drums at {n}"]


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path):
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


def _project(project, users, *, pool=40, model=True):
    examples = examples_create(project, [POOL[n % 4].format(n=n) for n in range(pool)])
    labeling_services.queue_fill(project=project)
    labeled_project(project, users["annotator"], count=60)
    if model:
        run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
        assert services.training_run_execute(run_id=run.pk).state == "succeeded"
    return examples


def _run(project, **kwargs):
    job, joined = services.prelabel_job_request(project=project, labeler="embedding", **kwargs)
    assert not joined
    return services.prelabel_job_execute(job_id=job.pk)


def test_pre_labeling_the_queue_stores_pending_llm_labels_with_the_model_s_view(project, users):
    examples = _project(project, users)
    QueueBuild.objects.all().delete()  # the new model's rebuild (never run here) would absorb the next request
    job = _run(project, limit=20)
    assert job.state == PrelabelState.SUCCEEDED, job.message
    assert (job.total, job.done, job.created, job.progress) == (20, 20, 20, 1.0)
    suggestions = list(Annotation.objects.filter(kind=AnnotationKind.LLM).select_related("label", "model_label"))
    assert len(suggestions) == 20 and {s.status for s in suggestions} == {"pending"}
    assert {s.example_id for s in suggestions} <= {e.pk for e in examples}
    one = suggestions[0]
    assert one.labeler_name == "embedding" and one.labeler_model == "all-MiniLM-L6-v2"
    assert set(one.probabilities) == {"spam", "ham"} and abs(sum(one.probabilities.values()) - 1) < 1e-6
    assert abs(one.confidence - max(one.probabilities.values())) < 1e-6
    # The model's prediction is stored next to it, for the review desk's agreement filter.
    assert all(s.model_label is not None and 0.5 <= s.model_confidence <= 1 for s in suggestions)
    assert job.details["model"] == "all-MiniLM-L6-v2" and job.details["examples_per_second"] > 0
    # The queue is re-ranked so what the LLM doubts or disputes reaches people first.
    assert QueueBuild.objects.filter(project=project, trigger=QueueBuildTrigger.PRELABEL).exists()


def test_a_second_run_skips_what_this_labeler_already_labeled_and_what_people_labeled(project, users):
    _project(project, users, model=False)
    first = _run(project, limit=30, selection="unlabeled")
    assert first.created == 30
    second = _run(project, limit=100, selection="unlabeled")
    assert second.total == 10 and second.created == 10  # 40 unlabeled in all; the 60 labeled are never chosen
    third = _run(project, limit=100, selection="unlabeled")
    assert third.total == 0 and third.message == MESSAGE_NOTHING.format(labeler="embedding")


def test_a_filter_selection_takes_unlabeled_texts_containing_the_text(project, users):
    _project(project, users, model=False)
    job = _run(project, limit=100, selection="filter", filter_text="GIFT card")
    texts = Example.objects.filter(annotations__kind="llm").values_list("text", flat=True)
    assert job.created == 10 and all("gift card" in text for text in texts)
    with pytest.raises(services.PrelabelError, match=ERROR_FILTER):
        services.prelabel_job_request(project=project, labeler="embedding", selection="filter", filter_text=" ")


def test_cancelling_stops_after_the_current_chunk_and_keeps_its_labels(project, users):
    _project(project, users, model=False)
    job, _ = services.prelabel_job_request(project=project, labeler="embedding", limit=40, selection="unlabeled")

    def cancel_after_first_chunk(running):
        if running.done >= CHUNK:
            services.prelabel_job_cancel(job=running)

    job = services.prelabel_job_execute(job_id=job.pk, on_progress=cancel_after_first_chunk)
    assert job.state == PrelabelState.CANCELLED and job.done == CHUNK and job.created == CHUNK
    assert Annotation.objects.filter(kind="llm").count() == CHUNK
    queued, _ = services.prelabel_job_request(project=project, labeler="embedding", limit=5)
    cancelled = services.prelabel_job_cancel(job=queued)
    assert cancelled.state == PrelabelState.CANCELLED
    assert services.prelabel_job_execute(job_id=queued.pk).state == PrelabelState.CANCELLED  # never runs


def test_pre_labeling_is_single_flight_per_project(project, users):
    first, joined = services.prelabel_job_request(project=project, labeler="embedding")
    again, joined_again = services.prelabel_job_request(project=project, labeler="causal_lm")
    assert (joined, joined_again, again.pk) == (False, True, first.pk)
    with pytest.raises(services.PrelabelError):
        services.prelabel_job_request(project=project, labeler="gpt-9")


def test_llm_unsure_and_disagreeing_items_are_routed_to_people_first(project, users):
    _project(project, users)
    _run(project, limit=40)
    project.settings = {**project.settings, "queue": {"slice_size": 20}}
    project.save(update_fields=["settings"])
    build = services.queue_build_request(project=project, trigger=QueueBuildTrigger.BUTTON)
    build = services.queue_build_execute(build_id=build.pk)
    assert build.composition["proposed"]["llm_disagrees"] > 0
    routed = build.composition["picked"].get("llm_disagrees", 0)
    assert routed >= 2  # its 10% share at least
    from labeling.models import QueueItem

    items = QueueItem.objects.filter(project=project, reason_code=QueueReason.LLM_DISAGREES)
    assert items.count() == routed
    assert all(item.reason.startswith(("LLM disagrees", "LLM unsure")) for item in items)


@pytest.fixture
def bearer(users):
    def make(role: str) -> dict[str, str]:
        _, raw = labeling_services.api_token_create(user=users[role])
        return {"authorization": f"Bearer {raw}"}

    return make


def test_the_api_starts_follows_and_cancels_pre_labeling_and_reports_trust(client, project, users, bearer):
    url = f"{API}/projects/{project.slug}/prelabel"
    body = {"labeler": "embedding", "limit": 10}
    assert client.post(url, body, content_type="application/json", headers=bearer("annotator")).status_code == 403
    started = client.post(url, body, content_type="application/json", headers=bearer("reviewer"))
    assert started.status_code == 202
    job_id = started.json()["job_id"]
    job = PrelabelJob.objects.get()
    assert job_id == f"prelabel-{job.pk}" and started.json()["coalesced"] is False
    followed = client.get(f"{API}/jobs/{job_id}", headers=bearer("reviewer")).json()
    assert (followed["kind"], followed["state"], followed["labeler"], followed["limit"]) == (
        "prelabel",
        "queued",
        "embedding",
        10,
    )
    joined = client.post(url, body, content_type="application/json", headers=bearer("admin"))
    assert joined.status_code == 202 and joined.json() == {"job_id": job_id, "state": "queued", "coalesced": True}
    cancelled = client.post(f"{url}/cancel", headers=bearer("reviewer")).json()
    assert cancelled["state"] == "cancelled"
    assert client.post(f"{url}/cancel", headers=bearer("reviewer")).status_code == 404
    assert client.post(url, {"limit": 0}, content_type="application/json", headers=bearer("admin")).status_code == 400

    # Trust: three examples labeled by both; the report says why there is no threshold yet.
    examples = examples_create(project, ["a", "b", "c"])
    spam = project.labels.get(name="spam")
    for example in examples:
        Annotation.objects.create(
            example=example, label=spam, labeler_name="embedding", kind="llm", status="pending", confidence=0.9
        )
        Annotation.objects.create(example=example, label=spam, author=users["annotator"], kind="human")
    trust = client.get(
        f"{API}/projects/{project.slug}/llm-trust", {"labeler": "embedding"}, headers=bearer("reviewer")
    ).json()
    assert trust["n"] == 3 and trust["agreement"] == 1.0 and trust["overall"]["threshold"] is None
    assert "need" in trust["overall"]["reason"]


def test_the_sweeper_requeues_a_pre_labeling_job_whose_worker_died(project, users):
    from datetime import timedelta

    from django.utils import timezone

    from models_app.services.prelabel import ERROR_WORKER_LOST, MAX_ATTEMPTS

    job, _ = services.prelabel_job_request(project=project, labeler="embedding")
    PrelabelJob.objects.filter(pk=job.pk).update(
        state=PrelabelState.RUNNING, attempts=1, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert services.prelabel_jobs_sweep() == 1
    job.refresh_from_db()
    assert job.state == PrelabelState.QUEUED and job.message == ERROR_WORKER_LOST.format(attempt=1, limit=MAX_ATTEMPTS)
    PrelabelJob.objects.filter(pk=job.pk).update(
        state=PrelabelState.RUNNING, attempts=MAX_ATTEMPTS, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert services.prelabel_jobs_sweep() == 1
    job.refresh_from_db()
    assert job.state == PrelabelState.FAILED
