"""The gate, publishing and rollback, serving with rules, and feedback into the queue, as services."""

from __future__ import annotations

import pytest

from labeling.models import Example, ExampleOrigin, QueueItem
from models_app import services
from models_app.models import (
    Deployment,
    DeploymentAction,
    DeploymentEvent,
    GateDecision,
    ModelVersion,
    ModelVersionStatus,
    PredictionLog,
    QueueBuild,
    Rule,
    RuleSet,
)
from models_app.services.publishing import ERROR_NO_PUBLISHED_MODEL

from .factories import labeled_project, shuffle_training_labels, train_version

pytestmark = pytest.mark.django_db


def _set(project, section, **values):
    project.settings = {**project.settings, section: {**project.settings.get(section, {}), **values}}
    project.save(update_fields=["settings"])


def test_a_first_model_that_beats_the_baseline_is_published_by_itself(project, users):
    labeled_project(project, users["annotator"], count=200)
    version, run = train_version(project)
    assert version.status == ModelVersionStatus.PUBLISHED
    assert "passed the gate and now serves" in run.message
    decision = GateDecision.objects.get(model_version=version)
    assert decision.passed and decision.against is None
    assert decision.comparison["size"] == 40
    assert decision.comparison["candidate"]["macro_f1"] > decision.comparison["candidate"]["baseline"]["macro_f1"]
    deployment = Deployment.objects.get(project=project)
    assert (deployment.model_version_id, deployment.rule_set_id, deployment.serial) == (version.pk, None, 1)
    event = DeploymentEvent.objects.get(project=project)
    assert (event.action, event.previous_model_version_id, event.gate_decision_id) == (
        DeploymentAction.PUBLISH,
        None,
        decision.pk,
    )


def test_a_small_holdout_is_rejected_and_nothing_serves(project, users):
    labeled_project(project, users["annotator"], count=100)
    version, run = train_version(project)
    assert version.status == ModelVersionStatus.REJECTED
    assert "The shared holdout has only 20 examples" in version.status_reason
    assert "The gate rejected it" in run.message
    assert not Deployment.objects.exists()


def test_a_candidate_trained_on_shuffled_labels_is_rejected_and_the_published_model_stays(project, users):
    examples = labeled_project(project, users["annotator"], count=200)
    first, _ = train_version(project)
    shuffle_training_labels(project, examples)
    second, run = train_version(project)
    assert second.status == ModelVersionStatus.REJECTED, second.metrics["macro_f1"]
    decision = GateDecision.objects.get(model_version=second)
    assert not decision.passed and decision.against_id == first.pk
    assert decision.comparison["candidate"]["macro_f1"] < decision.comparison["published"]["macro_f1"]
    assert any("below the published v1" in reason for reason in decision.reasons)
    first.refresh_from_db()
    assert first.status == ModelVersionStatus.PUBLISHED
    assert Deployment.objects.get(project=project).model_version_id == first.pk
    # Serving still answers with v1.
    result = services.predict(project=project, texts=["free money visit my channel"], metas=None)
    assert result.model_version == 1


def test_the_shared_holdout_leaves_out_what_the_published_model_trained_on(project, users):
    labeled_project(project, users["annotator"], count=200)
    first, _ = train_version(project)
    _set(project, "learning", holdout_share=0.5)
    second, _ = train_version(project)
    decision = GateDecision.objects.get(model_version=second)
    # v2 holds out the newest 100; v1 trained on the oldest 160, so 60 of them are left out.
    assert second.holdout["size"] == 100
    assert decision.comparison["excluded_trained_by_published"] == 60
    assert decision.comparison["size"] == 40
    assert decision.against_id == first.pk


def test_publishing_a_rejected_version_needs_a_reason_and_is_recorded_as_an_override(project, users):
    examples = labeled_project(project, users["annotator"], count=200)
    first, _ = train_version(project)
    shuffle_training_labels(project, examples)
    second, _ = train_version(project)
    with pytest.raises(services.PublishError, match="did not pass the gate"):
        services.model_version_publish(version=second, user=users["admin"])
    event = services.model_version_publish(version=second, user=users["admin"], reason="Legal asked for v2.")
    assert event.action == DeploymentAction.OVERRIDE and event.previous_model_version_id == first.pk
    decision = GateDecision.objects.get(model_version=second)
    assert (decision.override_reason, decision.overridden_by_id) == ("Legal asked for v2.", users["admin"].pk)
    assert decision.overridden_at is not None
    statuses = dict(ModelVersion.objects.filter(project=project).values_list("number", "status"))
    assert statuses == {1: ModelVersionStatus.RETIRED, 2: ModelVersionStatus.PUBLISHED}

    # Rolling back is the same switch; the serving process answers with v1 on its next call, no restart.
    assert services.predict(project=project, texts=["free money visit"], metas=None).model_version == 2
    back = services.model_version_publish(version=first, user=users["admin"])
    assert back.action == DeploymentAction.ROLLBACK
    assert services.predict(project=project, texts=["free money visit"], metas=None).model_version == 1
    deployment = Deployment.objects.get(project=project)
    assert (deployment.model_version_id, deployment.serial) == (first.pk, 3)
    assert ModelVersion.objects.filter(project=project, status=ModelVersionStatus.PUBLISHED).count() == 1


def test_predictions_are_logged_and_rules_run_on_top(project, users):
    labeled_project(project, users["annotator"], count=200)
    train_version(project)
    rules = RuleSet.objects.create(project=project, number=1, created_by=users["admin"])
    Rule.objects.create(
        rule_set=rules,
        position=1,
        name="gift cards are spam",
        conditions=[{"kind": "keywords", "words": ["gift card"], "mode": "any"}],
        action="force",
        label="spam",
    )
    Rule.objects.create(
        rule_set=rules,
        position=2,
        name="email goes to people",
        conditions=[{"kind": "meta_equals", "field": "channel", "value": "email"}],
        action="abstain",
    )
    with pytest.raises(services.PublishError, match=ERROR_NO_PUBLISHED_MODEL[:20]):
        services.rules_publish(project_id=project.pk + 999, rule_set=None)
    services.rules_publish(project_id=project.pk, rule_set=rules, user=users["admin"])
    texts = ["love the chorus, a GIFT CARD for you", "love the chorus, watched it twice", "great drums"]
    result = services.predict(
        project=project, texts=texts, metas=[{}, {"channel": "chat"}, {"channel": "email"}], user=users["admin"]
    )
    assert (result.model_version, result.rules_version) == (1, 1)
    first, second, third = result.predictions
    assert first["label"] == "spam" and first["rules_fired"] == ["gift cards are spam"]
    assert first["probabilities"]["ham"] > first["probabilities"]["spam"]  # the model said ham
    assert second["label"] == "ham" and second["rules_fired"] == [] and not second["abstained"]
    assert third["abstained"] and third["rules_fired"] == ["email goes to people"]
    log = PredictionLog.objects.get(pk=result.log_id)
    assert (log.count, log.abstained, log.model_number, log.rules_number) == (3, 1, 1, 1)
    assert log.requested_by_id == users["admin"].pk and log.duration_ms > 0
    assert log.predictions[0][0] == "spam"


def test_uncertain_and_abstained_predictions_become_deduplicated_feedback_examples_in_the_queue(project, users):
    examples = labeled_project(project, users["annotator"], count=200)
    train_version(project)
    _set(project, "serving", feedback_threshold=1.0)  # every prediction counts as uncertain
    QueueBuild.objects.filter(project=project).update(state="succeeded")  # the new model's rebuild has run
    texts = ["a brand new comment", "a brand new comment", examples[0].text, "  another new one  "]
    result = services.predict(project=project, texts=texts, metas=[{"channel": "web"}] * 4)
    log = PredictionLog.objects.get(pk=result.log_id)
    assert log.low_confidence == 4 and len(log.feedback) == 4
    outcome = services.feedback_ingest(log_id=log.pk)
    assert outcome["created"] == 2 and outcome["duplicates"] == 2
    assert services.feedback_ingest(log_id=log.pk) == {}  # a repeated task finds it done
    fed = Example.objects.filter(project=project, origin=ExampleOrigin.FEEDBACK).order_by("id")
    assert [example.text for example in fed] == ["a brand new comment", "another new one"]
    assert fed[0].meta["channel"] == "web" and fed[0].meta["feedback"]["prediction_log"] == log.pk
    assert QueueItem.objects.filter(example__in=fed, state="ready").count() == 2
    # A queue rebuild was asked for; its feedback source ranks them (see the queue-cascade tests).
    assert QueueBuild.objects.filter(project=project, trigger="feedback").exists()


def test_confident_predictions_are_not_fed_back_and_feedback_can_be_turned_off(project, users):
    labeled_project(project, users["annotator"], count=200)
    train_version(project)
    _set(project, "serving", feedback_threshold=0.0)
    log = PredictionLog.objects.get(pk=services.predict(project=project, texts=["free money"], metas=None).log_id)
    assert log.feedback == [] and log.low_confidence == 0
    _set(project, "serving", feedback_threshold=1.0, feedback=False)
    log = PredictionLog.objects.get(pk=services.predict(project=project, texts=["free money"], metas=None).log_id)
    assert log.feedback == [] and log.low_confidence == 1


def test_predict_without_a_published_model_says_what_to_do(project):
    with pytest.raises(services.PredictError, match="No model is published"):
        services.predict(project=project, texts=["hello"], metas=None)


def test_a_switch_made_by_another_process_is_served_within_the_refresh_interval(project, users, monkeypatch):
    import sys

    predict_module = sys.modules["models_app.services.predict"]

    examples = labeled_project(project, users["annotator"], count=200)
    first, _ = train_version(project)
    shuffle_training_labels(project, examples)
    second, _ = train_version(project)
    monkeypatch.setattr(predict_module, "LIVE_REFRESH_SECONDS", 0.3)
    assert services.predict(project=project, texts=["free money"], metas=None).model_version == 1
    # Another serving process switched the row; this process has not been told.
    Deployment.objects.filter(project=project).update(model_version=second)
    assert services.predict(project=project, texts=["free money"], metas=None).model_version == 1
    import time

    time.sleep(0.35)
    assert services.predict(project=project, texts=["free money"], metas=None).model_version == 2


def test_feedback_stops_at_the_daily_cap(project, users):
    labeled_project(project, users["annotator"], count=200)
    train_version(project)
    _set(project, "serving", feedback_threshold=1.0, feedback_per_day=3)
    first = services.predict(project=project, texts=["new one", "new two"], metas=None)
    assert services.feedback_ingest(log_id=first.log_id)["created"] == 2
    second = services.predict(project=project, texts=["new three", "new four", "new one"], metas=None)
    outcome = services.feedback_ingest(log_id=second.log_id)
    assert (outcome["created"], outcome["duplicates"], outcome["over_daily_cap"]) == (1, 1, 1)
    assert Example.objects.filter(project=project, origin=ExampleOrigin.FEEDBACK).count() == 3


def test_rules_checked_on_one_model_are_not_put_live_on_another(project, users):
    from models_app.services.publishing import ERROR_MODEL_CHANGED

    examples = labeled_project(project, users["annotator"], count=200)
    first, _ = train_version(project)
    shuffle_training_labels(project, examples)
    second, _ = train_version(project)
    services.model_version_publish(version=second, user=users["admin"], reason="testing a switch")
    rules = RuleSet.objects.create(project=project, number=1)
    with pytest.raises(services.PublishError, match=ERROR_MODEL_CHANGED[:30]):
        services.rules_publish(project_id=project.pk, rule_set=rules, checked_on=first.pk)
    services.rules_publish(project_id=project.pk, rule_set=rules, checked_on=second.pk)
    assert Deployment.objects.get(project=project).rule_set_id == rules.pk


def test_old_prediction_logs_are_pruned_once_their_feedback_is_queued(project, users, settings):
    from datetime import timedelta

    from django.utils import timezone

    labeled_project(project, users["annotator"], count=200)
    train_version(project)
    _set(project, "serving", feedback_threshold=1.0)
    settings.FLYWHEEL_PREDICTION_LOG_DAYS = 30
    pending = services.predict(project=project, texts=["still to ingest"], metas=None).log_id
    done = services.predict(project=project, texts=["already queued"], metas=None).log_id
    services.feedback_ingest(log_id=done)
    _set(project, "serving", feedback_threshold=0.0)
    plain = services.predict(project=project, texts=["free money"], metas=None).log_id
    fresh = services.predict(project=project, texts=["free money"], metas=None).log_id
    PredictionLog.objects.exclude(pk=fresh).update(created_at=timezone.now() - timedelta(days=31))
    assert services.prediction_logs_prune() == 2
    assert set(PredictionLog.objects.values_list("pk", flat=True)) == {pending, fresh}
    assert plain not in set(PredictionLog.objects.values_list("pk", flat=True))
    settings.FLYWHEEL_PREDICTION_LOG_DAYS = 0
    assert services.prediction_logs_prune() == 0


def test_the_sweep_ingests_feedback_whose_task_was_lost(project, users):
    from datetime import timedelta

    from django.utils import timezone

    labeled_project(project, users["annotator"], count=200)
    train_version(project)
    _set(project, "serving", feedback_threshold=1.0)
    lost = services.predict(project=project, texts=["a lost one"], metas=None).log_id
    _set(project, "serving", feedback_threshold=0.0)
    services.predict(project=project, texts=["free money"], metas=None)  # nothing to feed back
    assert services.feedback_sweep() == 0  # too recent: its task may still be on its way
    later = timezone.now() + timedelta(minutes=5)
    assert services.feedback_sweep(now=later) == 1
    assert PredictionLog.objects.get(pk=lost).feedback_result["created"] == 1
    assert services.feedback_sweep(now=later) == 0


def test_a_candidate_the_gate_cannot_compare_is_rejected_with_the_reason_and_the_run_still_succeeds(
    project, users, settings
):
    from pathlib import Path

    examples = labeled_project(project, users["annotator"], count=200)
    first, _ = train_version(project)
    (Path(settings.ARTIFACT_DIR) / first.artifact_path).write_bytes(b"tampered")
    services.model_cache_clear()
    shuffle_training_labels(project, examples, share=0.1)
    second, run = train_version(project)
    assert second.status == ModelVersionStatus.REJECTED
    decision = GateDecision.objects.get(model_version=second)
    assert not decision.passed and decision.reasons[0].startswith("The gate could not compare the models:")
    assert "checksum" in decision.reasons[0]
    assert Deployment.objects.get(project=project).model_version_id == first.pk
