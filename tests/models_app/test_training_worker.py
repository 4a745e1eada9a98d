"""Retraining in real Celery worker processes: labels from the annotate page start it; SIGKILL mid-run is survived."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from labeling.models import JobState
from models_app import services
from models_app.models import ModelVersion, TrainingRun, TrainingTrigger
from models_app.tasks import training_run_execute_task, training_triggers_check_task
from tests.conftest import _database_url
from tests.labeling.factories import run_import
from tests.labeling.test_annotate_views import LEASE, _card

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SPAM = "subscribe to my channel {n} free gift card click here"
HAM = "this song reminds me of the summer of {n} great drums"


def _csv(count: int) -> str:
    rows = ["text,date"]
    for number in range(count):
        rows.append(
            f"{(SPAM if number % 2 else HAM).format(n=number)},2024-{1 + number // 28:02d}-{1 + number % 28:02d}"
        )
    return "\n".join(rows) + "\n"


def _set(project, **values):
    project.settings = {**project.settings, "learning": {**project.settings.get("learning", {}), **values}}
    project.save(update_fields=["settings"])


def _wait_run(project, *, timeout: float, worker, state=JobState.SUCCEEDED) -> TrainingRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = TrainingRun.objects.filter(project=project).order_by("-id").first()
        if run is not None and run.state == state:
            return run
        if run is not None and run.state == JobState.FAILED:
            break
        time.sleep(0.2)
    log = worker.log_path.read_text(errors="replace")[-4000:] if hasattr(worker, "log_path") else ""
    raise AssertionError(f"training run is {run and run.state}: {run and run.message}\n{log}")


def test_labels_from_the_annotate_page_trigger_a_retrain_in_a_real_worker(
    project, users, client_for, celery_worker_process
):
    _set(project, retrain_every_labels=50)
    run_import(project, _csv(70))
    client = client_for(users["annotator"])
    page = client.get(reverse("labeling:annotate", kwargs={"slug": project.slug}))
    for _ in range(55):
        lease, example_id = _card(page)
        text = project.examples.get(pk=example_id).text
        label = "spam" if "subscribe" in text else "ham"
        page = client.post(
            reverse("labeling:annotate_submit", kwargs={"slug": project.slug}),
            {"lease_id": lease, "example_id": example_id, "label": label},
            headers={"HX-Request": "true"},
        )
        assert page.status_code == 200 and LEASE.search(page.content.decode())

    training_triggers_check_task.delay()  # what beat runs every minute, here sent to the real worker
    run = _wait_run(project, timeout=120, worker=celery_worker_process)
    assert run.trigger == TrainingTrigger.LABELS and run.labels_at_start == 55
    version = ModelVersion.objects.filter(project=project).first()
    assert version is not None, run.message
    # The gate rejects it: 11 holdout examples are too few to judge it, so nothing serves yet.
    assert run.model_version_id == version.pk and version.status == "rejected"
    assert "only 11 examples" in version.status_reason
    assert version.holdout["size"] == 11  # the newest 20% of the 55 human labels
    assert {"macro_f1", "accuracy", "per_class", "confusion"} <= set(version.metrics)
    assert (Path(settings.ARTIFACT_DIR) / version.artifact_path).exists()


def _start_worker(tmp_path: Path, name: str, queues: str) -> subprocess.Popen:
    log_path = tmp_path / f"{name}.log"
    env = os.environ.copy()
    env.update(
        DATABASE_URL=_database_url(connection.settings_dict),
        FLYWHEEL_DATA_DIR=str(settings.DATA_DIR),
        FLYWHEEL_CELERY_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        OMP_NUM_THREADS="1",
        DJANGO_SETTINGS_MODULE="flywheel.settings",
    )
    root = Path(__file__).resolve().parents[2]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "flywheel", "worker", "--pool=solo",
                "--loglevel=INFO", "--without-gossip", "--without-mingle",
                "-Q", queues, "-n", f"{name}-{os.getpid()}@%h",
            ],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    process.log_path = log_path
    deadline = time.monotonic() + 90
    while b" ready." not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(log_path.read_text(errors="replace")[-4000:])
        time.sleep(0.2)
    return process


def test_a_worker_killed_mid_training_leaves_no_version_and_the_sweeper_requeues_the_run(
    project, users, tmp_path, settings
):
    # Enough data that featurizing (MiniLM, a real model) keeps the run busy for a few seconds.
    _set(project, featurizer="minilm")
    run_import(project, _csv(400))
    from labeling.models import Annotation, AnnotationKind, AnnotationStatus, Example

    labels = {label.name: label for label in project.labels.all()}
    Annotation.objects.bulk_create(
        Annotation(
            example=example,
            label=labels["spam" if "subscribe" in example.text else "ham"],
            author=users["annotator"],
            kind=AnnotationKind.HUMAN,
            status=AnnotationStatus.SUBMITTED,
        )
        for example in Example.objects.filter(project=project)
    )
    # The doomed worker listens on a queue of its own, so no other worker of the session can take this run.
    doomed_queue = settings.CELERY_TASK_DEFAULT_QUEUE + "-doomed"
    worker = _start_worker(tmp_path, "doomed", doomed_queue)
    try:
        run = TrainingRun.objects.create(project=project, trigger=TrainingTrigger.API)
        training_run_execute_task.apply_async((run.pk,), queue=doomed_queue)
        # Kill it as soon as the worker has claimed the run: featurizing 400 texts with MiniLM takes it seconds more,
        # and waiting for a later progress step raced the end of a fast run.
        deadline = time.monotonic() + 60
        while TrainingRun.objects.get(pk=run.pk).state == JobState.QUEUED and time.monotonic() < deadline:
            time.sleep(0.02)
        running = TrainingRun.objects.get(pk=run.pk)
        assert running.state == JobState.RUNNING, running.message
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    time.sleep(1)
    killed = TrainingRun.objects.get(pk=run.pk)
    assert killed.state == JobState.RUNNING and killed.finished_at is None
    assert not ModelVersion.objects.filter(project=project).exists(), "no half-written version"

    later = timezone.now() + timedelta(seconds=settings.FLYWHEEL_JOB_STALE_SECONDS + 1)
    assert services.training_runs_sweep(now=later) == 1
    assert TrainingRun.objects.get(pk=run.pk).state == JobState.QUEUED

    # The sweeper sends the run to the usual queue, where any worker takes it.
    survivor = _start_worker(tmp_path, "survivor", settings.CELERY_TASK_DEFAULT_QUEUE)
    try:
        done = _wait_run(project, timeout=240, worker=survivor)
    finally:
        survivor.terminate()
        survivor.wait(timeout=30)
    assert done.pk == run.pk and done.attempts == 2
    assert ModelVersion.objects.filter(project=project).count() == 1
