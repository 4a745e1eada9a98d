"""Retraining as a service: labels by provenance, the time split, versions, single-flight, triggers, the sweeper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from labeling.models import Annotation, AnnotationKind, AnnotationStatus, Example, JobState
from models_app import services
from models_app.ml.training import load_artifact
from models_app.models import ModelVersion, ModelVersionStatus, TrainingRun, TrainingTrigger
from models_app.services.training import ERROR_WORKER_LOST, MAX_ATTEMPTS

from .factories import labeled_project

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path):
    settings.ARTIFACT_DIR = tmp_path / "artifacts"


def _set(project, **values):
    project.settings = {**project.settings, "learning": {**project.settings.get("learning", {}), **values}}
    project.save(update_fields=["settings"])


def _run(project, trigger=TrainingTrigger.BUTTON):
    run = services.training_run_request(project=project, trigger=trigger)
    return services.training_run_execute(run_id=run.pk)


def test_a_run_trains_evaluates_on_the_newest_labels_and_records_a_version(project, users):
    examples = labeled_project(project, users["annotator"])
    run = _run(project)
    assert run.state == JobState.SUCCEEDED, run.message
    version = ModelVersion.objects.get(project=project)
    # 24 holdout examples are below the gate's minimum (30): the version is kept, rejected, and does not serve.
    assert (version.number, version.status, run.model_version_id) == (1, ModelVersionStatus.REJECTED, version.pk)
    assert version.split_path and version.split_sha256
    assert run.progress == 1.0 and "macro-F1" in run.message
    # The holdout is the newest 20% of the human labels, by source time.
    assert version.holdout["size"] == 24
    assert version.cutoff == examples[96].observed_at
    assert version.training_counts["human"] == 96 and version.training_counts["llm"] == 0
    for key in ("accuracy", "macro_f1", "per_class", "confusion", "ece", "majority_baseline"):
        assert key in version.metrics
    assert set(version.metrics["per_class"]) == {"spam", "ham"}
    assert version.metrics["macro_f1"] > 0.9  # the two classes use different words
    assert version.random_split_metrics["split"]["holdout_size"] > 0
    assert version.params["fit"]["classes"] == ["ham", "spam"] and version.params["fit"]["iterations"] > 0
    model = load_artifact(settings_artifact(version), version.artifact_sha256)
    assert list(model.classes_) == ["ham", "spam"]


def settings_artifact(version):
    from django.conf import settings

    return settings.ARTIFACT_DIR / version.artifact_path


def test_training_is_deterministic_and_numbers_versions(project, users):
    labeled_project(project, users["annotator"])
    first = _run(project).model_version
    second = _run(project).model_version
    assert (first.number, second.number) == (1, 2)
    assert first.metrics == second.metrics
    # The files differ (the archive records when it was written); the fitted weights do not.
    weights = [
        load_artifact(settings_artifact(version), version.artifact_sha256).named_steps["classifier"].coef_
        for version in (first, second)
    ]
    assert (weights[0] == weights[1]).all()


def test_too_few_labels_ends_the_run_with_a_clear_message_and_no_version(project, users):
    labeled_project(project, users["annotator"], count=8)
    run = _run(project)
    assert run.state == JobState.SUCCEEDED
    assert run.message.startswith("Not enough")
    assert not ModelVersion.objects.exists()


def test_llm_labels_train_with_their_weight_but_never_enter_the_holdout(project, users):
    examples = labeled_project(project, users["annotator"], count=100)
    spam = project.labels.get(name="spam")
    extra = Example.objects.bulk_create(
        Example(
            project=project,
            text=f"free money llm {n}",
            observed_at=examples[-1].observed_at + timedelta(days=n),
            content_hash=f"llm-{n}",
        )
        for n in range(1, 6)
    )
    extra += Example.objects.bulk_create(
        Example(
            project=project,
            text=f"free gift early {n}",
            observed_at=examples[0].observed_at - timedelta(days=n),
            content_hash=f"early-{n}",
        )
        for n in range(1, 6)
    )
    for example in Example.objects.filter(text__contains=" llm ") | Example.objects.filter(text__contains="early"):
        Annotation.objects.create(
            example=example,
            label=spam,
            labeler_name="smollm2",
            kind=AnnotationKind.LLM,
            status=AnnotationStatus.ACCEPTED,
        )
    rows, human = services.training_rows(project=project, llm_weight=0.5)
    assert human == 100
    assert {row.weight for row in rows if row.provenance == "llm-accepted"} == {0.5}
    version = _run(project).model_version
    assert version.holdout["size"] == 20  # only human labels are held out
    # The 5 early LLM labels train; the 5 after the cutoff would be the future and are dropped.
    assert version.training_counts["llm"] == 5
    assert version.training_counts["dropped_future"] == 5


def test_requests_are_single_flight_and_a_request_during_training_queues_one_follow_up(project, users):
    labeled_project(project, users["annotator"])
    first = services.training_run_request(project=project, trigger=TrainingTrigger.API)
    again = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
    assert again.pk == first.pk and TrainingRun.objects.count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(project=project, trigger=TrainingTrigger.API)
    assert services.training_run_claim(run_id=first.pk)
    during = services.training_run_request(project=project, trigger=TrainingTrigger.LABELS)
    assert during.pk == first.pk and during.follow_up
    TrainingRun.objects.filter(pk=first.pk).update(state=JobState.QUEUED)
    services.training_run_execute(run_id=first.pk)
    runs = list(TrainingRun.objects.order_by("id"))
    assert len(runs) == 2 and runs[1].state == JobState.QUEUED, "one follow-up run, queued"


def test_triggers_start_a_run_after_enough_new_labels_and_on_schedule(project, users):
    _set(project, retrain_every_labels=50, schedule_hours=1)
    labeled_project(project, users["annotator"], count=40)
    assert services.training_triggers_check() == []
    labeled_project(project, users["annotator"], count=20, start=datetime(2025, 1, 1, tzinfo=UTC))
    (run,) = services.training_triggers_check()
    assert run.trigger == TrainingTrigger.LABELS
    services.training_run_execute(run_id=run.pk)
    assert services.training_triggers_check() == [], "no new labels since the run started"
    labeled_project(project, users["annotator"], count=2, start=datetime(2026, 1, 1, tzinfo=UTC))
    assert services.training_triggers_check() == []
    (scheduled,) = services.training_triggers_check(now=timezone.now() + timedelta(hours=2))
    assert scheduled.trigger == TrainingTrigger.SCHEDULE


def test_the_sweeper_requeues_a_run_whose_worker_died_and_gives_up_after_three(project, users, settings):
    labeled_project(project, users["annotator"])
    run = services.training_run_request(project=project, trigger=TrainingTrigger.API)
    assert services.training_run_claim(run_id=run.pk)
    TrainingRun.objects.filter(pk=run.pk).update(attempts=1)
    later = timezone.now() + timedelta(seconds=settings.FLYWHEEL_JOB_STALE_SECONDS + 1)
    assert services.training_runs_sweep(now=later) == 1
    run.refresh_from_db()
    assert run.state == JobState.QUEUED
    assert run.message == ERROR_WORKER_LOST.format(attempt=1, limit=MAX_ATTEMPTS)
    assert not ModelVersion.objects.exists(), "a killed run leaves no version"
    assert services.training_run_claim(run_id=run.pk)
    TrainingRun.objects.filter(pk=run.pk).update(attempts=MAX_ATTEMPTS)
    assert services.training_runs_sweep(now=later) == 1
    run.refresh_from_db()
    assert run.state == JobState.FAILED
