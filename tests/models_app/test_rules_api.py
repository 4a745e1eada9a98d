"""The rules API: who may list, preview, save and publish rule sets, and the 400/404/409 answers in between."""

from __future__ import annotations

import pytest

from models_app import services
from models_app.api_rules import ERROR_NO_RULE_SET, ERROR_PUBLISH_BODY
from models_app.ml.rules import ERROR_IN_RULE, ERROR_UNKNOWN_ACTION
from models_app.models import Deployment, RuleSet, TrainingTrigger
from models_app.services.publishing import ERROR_RULES_NEED_REASON

from .factories import labeled_project
from .test_rules_service import CHORUS_IS_SPAM, TAG_MONEY

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def served(project, users):
    labeled_project(project, users["annotator"], count=200)
    run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
    assert services.training_run_execute(run_id=run.pk).state == "succeeded"


def _post(client, url, body, headers):
    return client.post(url, body, content_type="application/json", headers=headers)


def test_roles_reviewers_read_and_preview_admins_save_and_publish(client, project, bearer):
    base = f"{API}/projects/{project.slug}/rules"
    body = {"rules": [TAG_MONEY]}
    expected = {"outsider": 404, "annotator": 403, "reviewer": 200, "admin": 200, "global_admin": 200}
    for who, status in expected.items():
        assert client.get(base, headers=bearer(who)).status_code == status, who
        assert _post(client, f"{base}/preview", body, bearer(who)).status_code == status, who
    assert client.get(base).status_code == 401
    for who, status in {"outsider": 404, "annotator": 403, "reviewer": 403}.items():
        assert _post(client, base, body, bearer(who)).status_code == status, who
        assert _post(client, f"{base}/1/publish", {}, bearer(who)).status_code == status, who
    assert not RuleSet.objects.exists()
    assert _post(client, base, body, bearer("admin")).status_code == 201
    assert _post(client, base, body, bearer("global_admin")).status_code == 201


def test_save_answers_201_with_the_number_and_preview_and_list_shows_it(client, project, users, served, bearer):
    base = f"{API}/projects/{project.slug}/rules"
    response = _post(client, base, {"rules": [TAG_MONEY], "note": "tag money"}, bearer("admin"))
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["number"], data["published"]) == (1, False)
    assert data["preview"]["model_version"] == 1 and data["preview"]["holdout_size"] == 40
    assert data["preview"]["firings"][0]["name"] == "money"

    response = _post(client, base, {"rules": [TAG_MONEY], "publish": True}, bearer("admin"))
    assert response.status_code == 201
    assert (response.json()["number"], response.json()["published"]) == (2, True)

    listing = client.get(base, headers=bearer("reviewer")).json()
    assert (listing["live"], listing["model_version"]) == (2, 1)
    assert [(v["number"], v["live"]) for v in listing["versions"]] == [(2, True), (1, False)]
    first = listing["versions"][1]
    assert (first["note"], first["created_by"], first["rules"]) == ("tag money", "project-admin", [TAG_MONEY])
    assert first["preview"]["changed"] == 0 and "samples" not in first["preview"]


def test_invalid_rules_answer_400_with_the_engines_message(client, project, served, bearer):
    base = f"{API}/projects/{project.slug}/rules"
    bad = {**TAG_MONEY, "action": "delete"}
    message = ERROR_IN_RULE.format(position=1, name="'money'", problem=ERROR_UNKNOWN_ACTION.format(action="delete"))
    for url, who in ((f"{base}/preview", "reviewer"), (base, "admin")):
        response = _post(client, url, {"rules": [bad]}, bearer(who))
        assert (response.status_code, response.json()) == (400, {"detail": message})
    response = _post(client, f"{base}/preview", {"rules": ["not an object"]}, bearer("reviewer"))
    assert response.status_code == 400 and response.json()["detail"].startswith("Rule 1 (unnamed)")
    assert not RuleSet.objects.exists()


def test_publish_answers_409_until_a_reason_is_given_and_rolls_back(client, project, users, served, bearer):
    base = f"{API}/projects/{project.slug}/rules"
    harmful = {"rules": [CHORUS_IS_SPAM], "publish": True}
    response = _post(client, base, harmful, bearer("admin"))
    worse = services.rules_preview(project=project, rules=[CHORUS_IS_SPAM])["worse"]
    assert (response.status_code, response.json()) == (409, {"detail": ERROR_RULES_NEED_REASON.format(reason=worse)})
    assert not RuleSet.objects.exists()

    assert _post(client, base, {"rules": [TAG_MONEY], "publish": True}, bearer("admin")).status_code == 201
    assert _post(client, base, {"rules": [CHORUS_IS_SPAM]}, bearer("admin")).json()["number"] == 2
    response = client.post(f"{base}/2/publish", headers=bearer("admin"))
    assert response.status_code == 409 and "needs a reason" in response.json()["detail"]
    response = _post(client, f"{base}/2/publish", {"reason": "Sales wants it."}, bearer("admin"))
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["model_version"], data["rules_version"], data["action"]) == (1, 2, "rules")

    # Roll back to v1 without a body at all.
    response = client.post(f"{base}/1/publish", headers=bearer("admin"))
    assert response.status_code == 200 and response.json()["rules_version"] == 1
    assert Deployment.objects.get(project=project).rule_set.number == 1
    response = _post(client, f"{base}/9/publish", {}, bearer("admin"))
    assert (response.status_code, response.json()) == (404, {"detail": ERROR_NO_RULE_SET.format(number=9)})
    response = _post(client, f"{base}/1/publish", ["why"], bearer("admin"))
    assert (response.status_code, response.json()) == (400, {"detail": ERROR_PUBLISH_BODY})


def test_publishing_before_any_model_serves_answers_409(client, project, bearer):
    base = f"{API}/projects/{project.slug}/rules"
    response = _post(client, base, {"rules": [TAG_MONEY], "publish": True}, bearer("admin"))
    assert response.status_code == 409 and response.json()["detail"].startswith("Publish a model first")
    preview = _post(client, f"{base}/preview", {"rules": [TAG_MONEY]}, bearer("reviewer")).json()
    assert preview["available"] is False and preview["model_version"] is None
