"""The queue cascade in a real Celery worker: a cold-start build after an import, a ranked one after each model."""

from __future__ import annotations

import time

import pytest

from labeling.models import (
    Annotation,
    AnnotationKind,
    AnnotationStatus,
    Example,
    JobState,
    QueueItem,
    QueueReason,
    QueueState,
)
from labeling.services.queue_slice import RANKED_FLOOR
from models_app import services
from models_app.models import ModelVersion, QueueBuild, QueueBuildTrigger, TrainingRun, TrainingTrigger
from tests.labeling.factories import run_import

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SPAM = "subscribe to my channel {n} free gift card click here"
HAM = "this song reminds me of the summer of {n} great drums"
MIXED = "subscribe to the song of the summer {n}"


def _csv(count: int) -> str:
    rows = ["text,date,channel"]
    for number in range(count):
        text = (SPAM, HAM, MIXED)[number % 3].format(n=number)
        rows.append(f"{text},2024-{1 + number // 28 % 12:02d}-{1 + number % 28:02d},{('a', 'b')[number % 2]}")
    return "\n".join(rows) + "\n"


def _wait_build(project, trigger: str, *, timeout: float, worker) -> QueueBuild:
    deadline = time.monotonic() + timeout
    build = None
    while time.monotonic() < deadline:
        build = QueueBuild.objects.filter(project=project, trigger=trigger).order_by("-id").first()
        if build is not None and build.state in (JobState.SUCCEEDED, JobState.FAILED):
            break
        time.sleep(0.2)
    log = worker.log_path.read_text(errors="replace")[-4000:]
    assert build is not None and build.state == JobState.SUCCEEDED, f"{build and build.message}\n{log}"
    return build


def test_imports_and_new_models_rebuild_the_queue_in_a_real_worker(project, users, celery_worker_process, settings):
    project.settings = {**project.settings, "queue": {"slice_size": 40}}
    project.save(update_fields=["settings"])
    run_import(project, _csv(240))  # the import finishing asks the worker for a cold-start build
    cold = _wait_build(project, QueueBuildTrigger.IMPORT, timeout=90, worker=celery_worker_process)
    assert cold.model_number is None and cold.composition["strata_field"] == "channel"
    assert cold.composition["picked"] == {"exploration": 40}

    # Label the first 120 examples (spam and ham only), then retrain in the worker.
    labels = {label.name: label for label in project.labels.all()}
    labeled = [
        e for e in Example.objects.filter(project=project).order_by("id") if "summer of" in e.text or "gift" in e.text
    ]
    Annotation.objects.bulk_create(
        Annotation(
            example=example,
            label=labels["spam" if "subscribe" in example.text else "ham"],
            author=users["annotator"],
            kind=AnnotationKind.HUMAN,
            status=AnnotationStatus.SUBMITTED,
        )
        for example in labeled[:120]
    )
    QueueItem.objects.filter(example__in=labeled[:120]).delete()
    run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
    deadline = time.monotonic() + 120
    while TrainingRun.objects.get(pk=run.pk).state not in (JobState.SUCCEEDED, JobState.FAILED):
        assert time.monotonic() < deadline, celery_worker_process.log_path.read_text(errors="replace")[-4000:]
        time.sleep(0.2)
    version = ModelVersion.objects.get(project=project)

    # The new version re-ranks the queue by itself.
    ranked = _wait_build(project, QueueBuildTrigger.MODEL, timeout=120, worker=celery_worker_process)
    assert ranked.model_number == version.number and ranked.slice_size == 40
    front = list(
        QueueItem.objects.filter(project=project, state=QueueState.READY, priority__gte=RANKED_FLOOR).order_by(
            "-priority"
        )
    )
    assert len(front) == 40 and all(item.model_version == version.number for item in front)
    first_uncertain = next(item for item in front if item.reason_code == QueueReason.UNCERTAIN)
    # Texts mixing spam and ham words, which the model never saw labeled, are what it is least sure about.
    assert "subscribe to the song" in Example.objects.get(pk=first_uncertain.example_id).text
    assert ranked.composition["picked"]["exploration"] >= 4
