"""The whole flywheel in a real Celery worker, driven only through the HTTP API like annotators and client apps.

Import real comments → label them through the API → the label threshold starts a retrain → the gate passes the
first model against the majority baseline → it is published, with a business rule on top → a client predicts → a
low-confidence prediction comes back as a feedback item in the queue. Then the other way: a candidate trained on
shuffled labels is rejected and the published model keeps serving.
"""

from __future__ import annotations

import csv
import io
import random
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from labeling import services as labeling_services
from labeling.models import Annotation, Example, ExampleOrigin, ImportJob, JobState, QueueItem
from models_app import services
from models_app.models import (
    Deployment,
    GateDecision,
    ModelVersion,
    ModelVersionStatus,
    QueueBuild,
    TrainingRun,
)
from models_app.tasks import training_triggers_check_task

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

API = "/api/v1"
DEMO = Path(__file__).resolve().parent.parent / "demo" / "youtube_spam"
LABELS_TO_GIVE = 170  # a 20% holdout of 34 clears the gate's minimum of 30
RULE = {
    "name": "channel plugs are spam",
    "conditions": [{"kind": "keywords", "words": ["my channel"], "mode": "any"}],
    "action": "force",
    "label": "spam",
}


def _upload() -> SimpleUploadedFile:
    """Two videos' comments, with the label column renamed so the import keeps it as meta (the test's oracle)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["COMMENT_ID", "AUTHOR", "DATE", "CONTENT", "truth"])
    for name in ("Youtube01-Psy.csv", "Youtube02-KatyPerry.csv"):
        with open(DEMO / name, newline="", encoding="utf-8") as file:
            reader = csv.reader(file)
            next(reader)
            writer.writerows(reader)
    return SimpleUploadedFile("comments.csv", out.getvalue().encode(), content_type="text/csv")


def _wait(check, *, timeout: float, worker, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    log = worker.log_path.read_text(errors="replace")[-5000:]
    raise AssertionError(f"timed out waiting for {what}\n{log}")


def _run_done(project):
    run = TrainingRun.objects.filter(project=project).order_by("-id").first()
    return run if run is not None and run.state in (JobState.SUCCEEDED, JobState.FAILED) else None


def test_the_flywheel_turns_by_itself_and_refuses_a_worse_model(
    client, project, users, celery_worker_process, settings
):
    worker = celery_worker_process
    project.settings = {
        "learning": {"retrain_every_labels": 150, "schedule_hours": 0},
        "serving": {"feedback_threshold": 0.999},
    }
    project.save(update_fields=["settings"])
    _, admin_token = labeling_services.api_token_create(user=users["admin"])
    _, annotator_token = labeling_services.api_token_create(user=users["annotator"])
    _, client_token = labeling_services.api_token_create(user=users["reviewer"], name="client app")
    admin = {"authorization": f"Bearer {admin_token}"}
    annotator = {"authorization": f"Bearer {annotator_token}"}
    client_app = {"authorization": f"Bearer {client_token}"}

    # 1. Import real data through the API; the worker runs the import.
    response = client.post(
        f"{API}/projects/{project.slug}/examples",
        {"file": _upload(), "ignore_labels": "true", "unescape_html": "true"},
        headers=admin,
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["job_id"]
    job = _wait(
        lambda: ImportJob.objects.filter(pk=job_id, state__in=["succeeded", "failed"]).first(),
        timeout=120,
        worker=worker,
        what="the import",
    )
    assert job.state == JobState.SUCCEEDED, job.message
    # 700 comments, five of them exact duplicates of others.
    assert Example.objects.filter(project=project).count() == 695

    # 2. Label through the API, as an annotator would: claim, answer, next.
    for _ in range(LABELS_TO_GIVE):
        claim = client.post(f"{API}/projects/{project.slug}/queue/claim", headers=annotator)
        assert claim.status_code == 200, claim.content
        item = claim.json()
        truth = Example.objects.get(pk=item["example_id"]).meta["truth"]
        answer = client.post(
            f"{API}/examples/{item['example_id']}/annotations",
            {"label": "spam" if truth == "1" else "ham", "lease_id": item["lease_id"]},
            content_type="application/json",
            headers=annotator,
        )
        assert answer.status_code == 201, answer.content

    # 3. The label threshold starts a retrain (what beat checks every minute, sent to the worker here).
    training_triggers_check_task.delay()
    run = _wait(lambda: _run_done(project), timeout=240, worker=worker, what="the retrain")
    assert run.state == JobState.SUCCEEDED and run.trigger == "labels", run.message

    # 4. Evaluated on the newest labels, it beats the majority baseline: the gate passes and it is published.
    first = ModelVersion.objects.get(project=project, number=1)
    assert first.status == ModelVersionStatus.PUBLISHED, first.status_reason
    decision = GateDecision.objects.get(model_version=first)
    assert decision.passed and decision.against is None and decision.comparison["size"] >= 30
    assert Deployment.objects.get(project=project).model_version_id == first.pk

    # 5. A business rule goes live on top of it.
    saved = client.post(
        f"{API}/projects/{project.slug}/rules",
        {"rules": [RULE], "note": "Channel plugs are always spam.", "publish": True},
        content_type="application/json",
        headers=admin,
    )
    assert saved.status_code == 201, saved.content
    assert saved.json()["published"]

    # 6. A client app predicts with its token.
    texts = ["please subscribe to my channel for more", "this song is so good, it made my day", "hmm ok 2014"]
    predicted = client.post(
        f"{API}/projects/{project.slug}/predict", {"texts": texts}, content_type="application/json", headers=client_app
    )
    assert predicted.status_code == 200, predicted.content
    body = predicted.json()
    assert (body["model_version"], body["rules_version"]) == (1, 1)
    plug, song, unsure = body["predictions"]
    assert plug["label"] == "spam" and plug["rules_fired"] == [RULE["name"]]
    assert song["label"] == "ham" and song["rules_fired"] == []
    assert max(unsure["probabilities"].values()) < 0.999

    # 7. The low-confidence prediction comes back as a feedback example, ranked into the queue by its own source.
    fed = _wait(
        lambda: QueueItem.objects.filter(
            example__project=project,
            example__origin=ExampleOrigin.FEEDBACK,
            example__text=texts[2],
            reason_code="feedback",
        ).first(),
        timeout=120,
        worker=worker,
        what="the feedback item in the queue",
    )
    assert fed.state == "ready"
    assert QueueBuild.objects.filter(project=project, trigger="feedback").exists()

    # 8. The other way: a candidate trained on shuffled labels is rejected and v1 keeps serving.
    # Only the labels v1 trained on are shuffled: the newest ones, the holdout both are judged on, stay true.
    trained_on = services.split_load(first).train_ids.tolist()
    rng = random.Random(7)
    labels = list(project.labels.all())
    for annotation in Annotation.objects.filter(example_id__in=trained_on):
        annotation.label = rng.choice(labels)
        annotation.save(update_fields=["label"])
    retrain = client.post(f"{API}/projects/{project.slug}/retrain", headers=admin)
    assert retrain.status_code == 202
    run = _wait(
        lambda: (
            TrainingRun.objects.filter(pk=int(retrain.json()["job_id"].removeprefix("train-")))
            .exclude(state__in=["queued", "running"])
            .first()
        ),
        timeout=240,
        worker=worker,
        what="the shuffled retrain",
    )
    second = ModelVersion.objects.get(project=project, number=2)
    assert second.status == ModelVersionStatus.REJECTED, (second.status_reason, run.message)
    assert GateDecision.objects.get(model_version=second).against_id == first.pk
    assert Deployment.objects.get(project=project).model_version_id == first.pk
    again = client.post(
        f"{API}/projects/{project.slug}/predict", {"texts": texts}, content_type="application/json", headers=client_app
    )
    assert again.json()["model_version"] == 1
