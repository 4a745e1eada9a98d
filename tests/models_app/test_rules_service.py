"""Rule sets as services: the holdout preview on a real trained model, saving numbers, publishing and rolling back."""

from __future__ import annotations

import pytest
from django.db.models import Max

from models_app import services
from models_app.ml.rules import ERROR_IN_RULE, ERROR_UNKNOWN_LABEL, RuleError
from models_app.models import Deployment, DeploymentAction, DeploymentEvent, ModelVersion, RuleSet, TrainingTrigger
from models_app.services import rules as rules_service
from models_app.services.publishing import ERROR_NO_PUBLISHED_MODEL, ERROR_RULES_NEED_REASON
from models_app.services.rules import MESSAGE_NO_MODEL

from .factories import labeled_project

pytestmark = pytest.mark.django_db

CHORUS_IS_SPAM = {
    "name": "chorus is spam",
    "enabled": True,
    "conditions": [{"kind": "keywords", "words": ["chorus"], "mode": "any"}],
    "action": "force",
    "label": "spam",
}
SUMMER_TO_PEOPLE = {
    "name": "summer goes to people",
    "enabled": True,
    "conditions": [{"kind": "keywords", "words": ["summer"]}],
    "action": "abstain",
}
TAG_MONEY = {
    "name": "money",
    "enabled": True,
    "conditions": [{"kind": "regex", "pattern": "money"}],
    "action": "tag",
    "tag": "money",
}


@pytest.fixture
def published(project, users):
    """A project whose first model (trained on 200 alternating spam/ham labels) passed the gate and serves."""
    labeled_project(project, users["annotator"], count=200)
    run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
    run = services.training_run_execute(run_id=run.pk)
    assert run.state == "succeeded", run.message
    version = ModelVersion.objects.get(pk=run.model_version_id)
    assert Deployment.objects.get(project=project).model_version_id == version.pk
    return version


def _holdout_texts(version):
    return services.holdout_load(version).texts


def test_a_force_rule_on_a_keyword_changes_exactly_the_holdout_rows_that_contain_it(project, published):
    texts = _holdout_texts(published)
    chorus = [text for text in texts if "chorus" in text]
    assert 0 < len(chorus) < len(texts)

    before = services.rules_preview(project=project, rules=[])
    assert before["changed"] == 0 and before["fired"] == {} and before["samples"] == []
    preview = services.rules_preview(project=project, rules=[CHORUS_IS_SPAM])

    assert (preview["available"], preview["model_version"], preview["published"]) == (True, 1, True)
    assert preview["holdout_size"] == len(texts) == 40
    assert preview["changed"] == len(chorus)  # the model calls every chorus comment ham; the rule says spam
    assert preview["broken"] == len(chorus) and preview["fixed"] == 0
    assert preview["fired"] == {"chorus is spam": len(chorus)}
    assert preview["firings"] == [{"position": 1, "name": "chorus is spam", "enabled": True, "count": len(chorus)}]
    assert preview["abstained"] == 0 and preview["coverage"] == 1.0
    assert sorted(row["text"] for row in preview["samples"]) == sorted(chorus)
    row = preview["samples"][0]
    assert (row["model_label"], row["label"], row["true_label"], row["rules_fired"]) == (
        "ham",
        "spam",
        "ham",
        ["chorus is spam"],
    )
    assert preview["with_rules"]["accuracy"] < preview["without"]["accuracy"] == before["without"]["accuracy"]
    assert preview["with_rules"]["macro_f1"] < preview["without"]["macro_f1"]
    assert preview["worse"].startswith("macro-F1 ")


def test_an_abstain_rule_lowers_coverage_and_a_disabled_rule_does_nothing(project, published):
    summer = sum("summer" in text for text in _holdout_texts(published))
    preview = services.rules_preview(project=project, rules=[SUMMER_TO_PEOPLE])
    assert preview["abstained"] == summer > 0
    assert preview["coverage"] == pytest.approx(1 - summer / 40)
    assert preview["with_rules"]["answered"] == 40 - summer
    assert preview["changed"] == 0 and len(preview["samples"]) == summer
    assert all(row["abstained"] and row["label"] == row["model_label"] for row in preview["samples"])
    assert preview["worse"] == ""

    off = services.rules_preview(project=project, rules=[{**SUMMER_TO_PEOPLE, "enabled": False}])
    assert (off["abstained"], off["coverage"], off["fired"]) == (0, 1.0, {"summer goes to people": 0})


def test_without_any_model_the_rules_are_still_validated(project):
    preview = services.rules_preview(project=project, rules=[CHORUS_IS_SPAM])
    assert (preview["available"], preview["message"], preview["model_version"]) == (False, MESSAGE_NO_MODEL, None)
    with pytest.raises(RuleError, match="Rule 1"):
        services.rules_preview(project=project, rules=[{**CHORUS_IS_SPAM, "label": "eggs"}])


def test_saving_numbers_rule_sets_and_keeps_every_rule_and_the_preview(project, users, published):
    first = services.rule_set_save(project=project, rules=[CHORUS_IS_SPAM], note=" first ", user=users["admin"])
    second = services.rule_set_save(
        project=project, rules=[TAG_MONEY, SUMMER_TO_PEOPLE], note="tags", user=users["admin"]
    )
    assert (first.number, first.note, second.number) == (1, "first", 2)
    assert services.rule_specs(second) == [TAG_MONEY, SUMMER_TO_PEOPLE]
    assert list(second.rules.values_list("position", "name")) == [(1, "money"), (2, "summer goes to people")]
    stored = RuleSet.objects.get(pk=first.pk)
    assert stored.preview["changed"] == services.rules_preview(project=project, rules=[CHORUS_IS_SPAM])["changed"]
    assert stored.created_by_id == users["admin"].pk
    assert [rule_set.number for rule_set in services.rule_set_list(project=project)] == [2, 1]
    # Saving is not publishing.
    assert Deployment.objects.get(project=project).rule_set_id is None


def test_a_save_that_loses_the_race_for_a_number_takes_the_next_one(project, users, monkeypatch):
    services.rule_set_save(project=project, rules=[TAG_MONEY], note="", user=users["admin"])
    calls = []

    def stale_max(field):
        """Read the number as it was before another save took it, the first time only."""
        calls.append(field)
        return Max(field) - 1 if len(calls) == 1 else Max(field)

    monkeypatch.setattr(rules_service, "Max", stale_max)
    second = services.rule_set_save(project=project, rules=[TAG_MONEY], note="", user=users["admin"])
    assert second.number == 2 and len(calls) == 2
    assert list(RuleSet.objects.filter(project=project).values_list("number", flat=True)) == [2, 1]


def test_invalid_rules_are_refused_with_the_engines_message_and_nothing_is_saved(project, users, published):
    bad = {**CHORUS_IS_SPAM, "name": "eggs rule", "label": "eggs"}
    problem = ERROR_UNKNOWN_LABEL.format(label="eggs", labels="spam, ham")
    expected = ERROR_IN_RULE.format(position=2, name="'eggs rule'", problem=problem)
    with pytest.raises(RuleError) as error:
        services.rule_set_save(project=project, rules=[TAG_MONEY, bad], note="", user=users["admin"])
    assert str(error.value) == expected
    with pytest.raises(RuleError, match="Rule 1 \\('money'\\): condition 1: pattern"):
        services.rules_preview(
            project=project, rules=[{**TAG_MONEY, "conditions": [{"kind": "regex", "pattern": "(a"}]}]
        )
    assert not RuleSet.objects.exists()


def test_publishing_harmful_rules_needs_a_reason_and_nothing_is_saved_when_refused(project, users, published):
    worse = services.rules_preview(project=project, rules=[CHORUS_IS_SPAM])["worse"]
    with pytest.raises(services.PublishError) as error:
        services.rule_set_save(project=project, rules=[CHORUS_IS_SPAM], note="", user=users["admin"], publish=True)
    assert str(error.value) == ERROR_RULES_NEED_REASON.format(reason=worse)
    assert not RuleSet.objects.exists()

    rule_set = services.rule_set_save(project=project, rules=[CHORUS_IS_SPAM], note="", user=users["admin"])
    with pytest.raises(services.PublishError, match="publishing them needs a reason"):
        services.rule_set_publish(rule_set=rule_set, user=users["admin"])
    event = services.rule_set_publish(rule_set=rule_set, user=users["admin"], reason="Marketing insists.")
    assert (event.action, event.rule_set_id, event.reason) == (
        DeploymentAction.RULES,
        rule_set.pk,
        "Marketing insists.",
    )
    assert Deployment.objects.get(project=project).rule_set_id == rule_set.pk


def test_harmless_rules_publish_without_a_reason_and_roll_back_to_an_earlier_set(project, users, published):
    first = services.rule_set_save(project=project, rules=[TAG_MONEY], note="", user=users["admin"], publish=True)
    second = services.rule_set_save(
        project=project, rules=[TAG_MONEY, SUMMER_TO_PEOPLE], note="", user=users["admin"], publish=True
    )
    assert Deployment.objects.get(project=project).rule_set_id == second.pk
    back = services.rule_set_publish(rule_set=first, user=users["admin"])
    assert (back.rule_set_id, back.previous_rule_set_id) == (first.pk, second.pk)
    deployment = Deployment.objects.get(project=project)
    assert (deployment.rule_set_id, deployment.model_version_id) == (first.pk, published.pk)
    off = services.rule_set_publish(rule_set=None, project=project, user=users["admin"])
    assert off.rule_set_id is None and Deployment.objects.get(project=project).rule_set_id is None
    assert DeploymentEvent.objects.filter(project=project, action=DeploymentAction.RULES).count() == 4


def test_rules_cannot_go_live_before_a_model_serves(project, users):
    rule_set = services.rule_set_save(project=project, rules=[TAG_MONEY], note="", user=users["admin"])
    assert rule_set.preview["available"] is False
    with pytest.raises(services.PublishError, match=ERROR_NO_PUBLISHED_MODEL):
        services.rule_set_publish(rule_set=rule_set, user=users["admin"])


def test_predict_uses_newly_published_rules_at_once(project, users, published):
    text = "love the chorus, watched it twice"
    before = services.predict(project=project, texts=[text], metas=None)
    assert (before.rules_version, before.predictions[0]["label"]) == (None, "ham")
    rule_set = services.rule_set_save(
        project=project, rules=[CHORUS_IS_SPAM], note="", user=users["admin"], publish=True, reason="Asked for."
    )
    after = services.predict(project=project, texts=[text], metas=None)
    assert after.rules_version == rule_set.number == 1
    assert (after.predictions[0]["label"], after.predictions[0]["rules_fired"]) == ("spam", ["chorus is spam"])
    services.rule_set_publish(rule_set=None, project=project, user=users["admin"])
    assert services.predict(project=project, texts=[text], metas=None).predictions[0]["label"] == "ham"
