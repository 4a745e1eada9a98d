"""The rules page: who may open and change it, the htmx preview partial, saving and publishing from the form."""

from __future__ import annotations

import pytest
from django.http import QueryDict
from django.urls import reverse
from django.utils.html import escape

from labeling.models import Example
from models_app import services
from models_app.models import Deployment, ModelVersion, RuleSet, TrainingTrigger
from models_app.services.publishing import ERROR_RULES_NEED_REASON
from models_app.views_rules import MESSAGE_SAVED, rules_from_post

from .factories import labeled_project

pytestmark = pytest.mark.django_db

WHO = ["anonymous", "outsider", "annotator", "reviewer", "admin", "global_admin"]
RANK = {"annotator": 1, "reviewer": 2, "admin": 3, "global_admin": 3}
HTMX = {"HX-Request": "true"}
PAYLOAD = "<script>window.__pwned=1</script>"


@pytest.fixture
def published(project, users):
    labeled_project(project, users["annotator"], count=200)
    run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
    run = services.training_run_execute(run_id=run.pk)
    assert run.state == "succeeded", run.message
    return ModelVersion.objects.get(pk=run.model_version_id)


def _url(name: str, project, **kwargs) -> str:
    return reverse(f"models_app:{name}", kwargs={"slug": project.slug, **kwargs})


def _expected(who: str, allowed: int, minimum: str) -> int:
    if who == "anonymous":
        return 302
    if who == "outsider":
        return 404
    return allowed if RANK[who] >= RANK[minimum] else 403


def _form(*, name="chorus is spam", words="chorus", action="force", label="spam", key="7", **extra):
    """One rule with one keyword condition, as the editor posts it."""
    return {
        "rule": [key],
        f"rule-{key}-name": name,
        f"rule-{key}-enabled": "on",
        f"rule-{key}-action": action,
        f"rule-{key}-label": label,
        f"rule-{key}-tag": "",
        f"rule-{key}-cond": ["c1"],
        "cond-c1-kind": "keywords_any",
        "cond-c1-words": words,
        "cond-c1-pattern": "ignored",
        **extra,
    }


@pytest.mark.parametrize("who", WHO)
def test_who_may_open_preview_and_change_the_rules(client_for, users, project, who):
    client = client_for(None if who == "anonymous" else users[who])
    page = client.get(_url("rules", project))
    assert page.status_code == _expected(who, 200, "reviewer")
    if page.status_code == 200:
        assert (b'id="rules-form"' in page.content) == (RANK[who] >= RANK["admin"])
        assert b">Rules</a>" in page.content  # the subnav link
    preview = client.post(_url("rules_preview", project), _form(), headers=HTMX)
    # An expired session on an htmx request is sent to the login page with HX-Redirect.
    assert preview.status_code == (204 if who == "anonymous" else _expected(who, 200, "reviewer"))
    save = client.post(_url("rules_save", project), _form(intent="save"))
    assert save.status_code == _expected(who, 303, "admin")
    assert client.post(_url("rules_publish", project, number=1)).status_code == _expected(who, 303, "admin")
    assert client.post(_url("rules_off", project)).status_code == _expected(who, 303, "admin")


def test_the_form_reads_rules_in_page_order_with_only_the_fields_of_each_kind_and_action():
    post = QueryDict(mutable=True)
    post.setlist("rule", ["2", "1", "bad key!"])
    post.update({"rule-1-name": " first ", "rule-1-action": "tag", "rule-1-tag": "t", "rule-1-label": "spam"})
    post.update({"rule-2-name": "second", "rule-2-enabled": "on", "rule-2-action": "abstain"})
    post.setlist("rule-2-cond", ["a", "b", "c"])
    post.update({"cond-a-kind": "confidence_below", "cond-a-threshold": "0.6"})
    post.update({"cond-b-kind": "meta_in", "cond-b-field": " channel ", "cond-b-values": "email, chat\nsms"})
    post.update({"cond-c-kind": "predicted_in"})
    post.setlist("cond-c-labels", ["spam", "ham"])
    specs, keys = rules_from_post(post)
    assert keys == ["2", "1"]
    assert specs == [
        {
            "name": "second",
            "enabled": True,
            "action": "abstain",
            "conditions": [
                {"kind": "confidence_below", "threshold": 0.6},
                {"kind": "meta_in", "field": "channel", "values": ["email", "chat", "sms"]},
                {"kind": "predicted_in", "labels": ["spam", "ham"]},
            ],
        },
        {"name": "first", "enabled": False, "action": "tag", "tag": "t", "conditions": []},
    ]


def test_the_preview_partial_shows_the_numbers_and_escapes_texts_and_rule_names(client_for, users, project, published):
    holdout = services.holdout_load(published)
    chorus = [int(i) for i, text in zip(holdout.example_ids, holdout.texts, strict=True) if "chorus" in text]
    Example.objects.filter(pk=chorus[0]).update(text=f"{PAYLOAD} love the chorus")
    response = client_for(users["reviewer"]).post(
        _url("rules_preview", project), _form(name=f"{PAYLOAD} rule"), headers=HTMX
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert PAYLOAD not in html and "<script" not in html
    assert escape(f"{PAYLOAD} love the chorus") in html
    assert html.count(escape(f"{PAYLOAD} rule")) >= 2  # firings and the sample's rules
    assert f'<dd data-stat="changed">{len(chorus)}</dd>' in html
    assert 'data-worse="true"' in html and "Publishing them needs a reason" in html
    assert 'id="rule-error-7" role="alert" hx-swap-oob="true"></p>' in html  # clears the rule's old error
    assert "<html" not in html


def test_a_rule_error_shows_next_to_its_rule_escaped(client_for, users, project, published):
    form = _form(name=f"{PAYLOAD} x", key="3", label="eggs")
    response = client_for(users["admin"]).post(_url("rules_preview", project), form, headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<script" not in html
    message = escape(f"Rule 1 ('{PAYLOAD} x'): label 'eggs' is not one of the labels: spam, ham.")
    assert f'id="rule-error-3" role="alert" hx-swap-oob="true">{message}</p>' in html
    assert 'class="alert alert-error"' in html


def test_saving_from_the_form_creates_the_next_rule_set(client_for, users, project, published):
    client = client_for(users["admin"])
    response = client.post(_url("rules_save", project), _form(intent="save", note="first try"), follow=True)
    assert response.redirect_chain == [(_url("rules", project), 303)]
    rule_set = RuleSet.objects.get(project=project)
    assert (rule_set.number, rule_set.note, rule_set.created_by_id) == (1, "first try", users["admin"].pk)
    assert services.rule_specs(rule_set) == [
        {
            "name": "chorus is spam",
            "enabled": True,
            "conditions": [{"kind": "keywords", "words": ["chorus"], "mode": "any"}],
            "action": "force",
            "label": "spam",
        }
    ]
    assert MESSAGE_SAVED.format(number=1) in response.content.decode()
    assert "Save as v2" in response.content.decode()
    assert Deployment.objects.get(project=project).rule_set_id is None


def test_save_and_publish_asks_for_a_reason_when_worse_then_shows_the_rules_live(client_for, users, project, published):
    client = client_for(users["admin"])
    refused = client.post(_url("rules_save", project), _form(intent="publish", note="kept"))
    assert refused.status_code == 409
    html = refused.content.decode()
    assert escape(ERROR_RULES_NEED_REASON.split("(")[0]) in html
    assert 'value="kept"' in html and 'value="chorus"' in html  # the editor keeps what was posted
    assert not RuleSet.objects.exists()

    response = client.post(_url("rules_save", project), _form(intent="publish", reason="Asked by sales"), follow=True)
    assert response.status_code == 200
    assert Deployment.objects.get(project=project).rule_set.number == 1
    html = response.content.decode()
    assert 'id="live-rules-version"' in html and "v1</strong>" in html
    assert "when text has any of: chorus, force “spam”" in html


def test_invalid_rules_posted_to_save_come_back_with_the_error_next_to_the_rule(client_for, users, project, published):
    form = _form(intent="save", key="4")
    form["cond-c1-kind"] = "regex"
    form["cond-c1-pattern"] = "(unclosed"
    response = client_for(users["admin"]).post(_url("rules_save", project), form)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="rule-error-4" role="alert">Rule 1 (&#x27;chorus is spam&#x27;): condition 1: pattern' in html
    assert 'value="(unclosed"' in html
    assert not RuleSet.objects.exists()


def test_publishing_an_earlier_version_rolls_back_and_refusals_show_their_message(
    client_for, users, project, published
):
    first = services.rule_set_save(project=project, rules=[], note="empty", user=users["admin"], publish=True)
    second_specs, _ = rules_from_post(_as_querydict(_form()))
    second = services.rule_set_save(project=project, rules=second_specs, note="", user=users["admin"])
    client = client_for(users["admin"])
    response = client.post(_url("rules_publish", project, number=second.number), follow=True)
    assert "publishing them needs a reason" in response.content.decode()
    assert Deployment.objects.get(project=project).rule_set_id == first.pk
    client.post(_url("rules_publish", project, number=second.number), {"reason": "Try it"})
    assert Deployment.objects.get(project=project).rule_set_id == second.pk
    client.post(_url("rules_publish", project, number=first.number))
    assert Deployment.objects.get(project=project).rule_set_id == first.pk
    client.post(_url("rules_off", project))
    assert Deployment.objects.get(project=project).rule_set_id is None
    assert client.post(_url("rules_publish", project, number=9)).status_code == 404


def _as_querydict(data):
    post = QueryDict(mutable=True)
    for key, value in data.items():
        post.setlist(key, value if isinstance(value, list) else [value])
    return post
