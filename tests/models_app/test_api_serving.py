"""The prediction API and publishing endpoints: auth, roles, clear 4xx answers, rollback, gate decisions."""

from __future__ import annotations

import pytest

from models_app import services
from models_app.api_serving import (
    ERROR_META_LENGTH,
    ERROR_TEXT_EMPTY,
    ERROR_TEXT_TOO_LONG,
    ERROR_TEXTS_EMPTY,
    ERROR_TEXTS_TOO_MANY,
)
from models_app.models import GateDecision, ModelVersion, PredictionLog

from .factories import labeled_project, shuffle_training_labels, train_version

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def served(project, users):
    examples = labeled_project(project, users["annotator"], count=200)
    train_version(project)
    return examples


def _predict(client, project, headers, body):
    return client.post(f"{API}/projects/{project.slug}/predict", body, content_type="application/json", headers=headers)


def test_predict_answers_members_with_a_token(client, project, served, bearer):
    body = {"texts": ["subscribe to my channel free gift", "love the chorus"], "meta": [{"a": 1}, {}]}
    assert _predict(client, project, {}, body).status_code == 401
    assert _predict(client, project, bearer("outsider"), body).status_code == 404
    response = _predict(client, project, bearer("annotator"), body)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["model_version"] == 1 and data["rules_version"] is None
    spam, ham = data["predictions"]
    assert spam["label"] == "spam" and ham["label"] == "ham"
    assert set(spam) >= {"label", "probabilities", "abstained", "rules_fired"}
    assert sum(spam["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert spam["abstained"] is False and spam["rules_fired"] == []
    assert PredictionLog.objects.get().count == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"texts": []}, ERROR_TEXTS_EMPTY),
        ({"texts": ["x"] * 1001}, ERROR_TEXTS_TOO_MANY.format(limit=1000, count=1001)),
        ({"texts": ["ok", "a" * 20_001]}, ERROR_TEXT_TOO_LONG.format(index=1, length=20_001, limit=20_000)),
        ({"texts": ["ok", "   "]}, ERROR_TEXT_EMPTY.format(index=1)),
        ({"texts": ["a", "b"], "meta": [{}]}, ERROR_META_LENGTH.format(meta=1, texts=2)),
    ],
)
def test_invalid_input_gets_a_400_with_a_clear_message(client, project, served, bearer, body, message):
    response = _predict(client, project, bearer("annotator"), body)
    assert response.status_code == 400
    assert response.json() == {"detail": message}
    assert not PredictionLog.objects.exists()


@pytest.mark.parametrize("body", [{}, {"texts": "one text"}, {"texts": [1, 2]}, {"texts": ["a"], "meta": ["x"]}])
def test_wrong_types_get_a_422_naming_the_field(client, project, served, bearer, body):
    response = _predict(client, project, bearer("annotator"), body)
    assert response.status_code == 422
    assert "texts" in str(response.json()) or "meta" in str(response.json())


def test_not_json_is_a_4xx(client, project, served, bearer):
    response = client.post(
        f"{API}/projects/{project.slug}/predict", "{not json", content_type="application/json", headers=bearer("admin")
    )
    assert 400 <= response.status_code < 500


def test_predict_before_any_publish_is_a_409_that_says_what_to_do(client, project, bearer):
    response = _predict(client, project, bearer("annotator"), {"texts": ["hello"]})
    assert response.status_code == 409
    assert "No model is published" in response.json()["detail"]


def test_publishing_needs_an_admin_and_a_reason_for_a_rejected_version(client, project, users, served, bearer):
    shuffle_training_labels(project, served)
    train_version(project)
    assert ModelVersion.objects.get(number=2).status == "rejected"
    url = f"{API}/projects/{project.slug}/models/2/publish"
    assert client.post(url, headers=bearer("reviewer")).status_code == 403
    assert client.post(url, headers=bearer("outsider")).status_code == 404
    refused = client.post(url, headers=bearer("admin"))
    assert refused.status_code == 409 and "needs a written reason" in refused.json()["detail"]
    assert client.post(f"{API}/projects/{project.slug}/models/9/publish", headers=bearer("admin")).status_code == 404

    done = client.post(
        url, {"reason": "A customer needs v2 today."}, content_type="application/json", headers=bearer("admin")
    )
    assert done.status_code == 200, done.content
    assert done.json()["action"] == "override" and done.json()["model_version"] == 2
    assert done.json()["previous_model_version"] == 1 and done.json()["serial"] == 2
    assert GateDecision.objects.get(model_version__number=2).override_reason == "A customer needs v2 today."
    predicted = _predict(client, project, bearer("annotator"), {"texts": ["hello"]}).json()
    assert predicted["model_version"] == 2

    back = client.post(f"{API}/projects/{project.slug}/models/1/publish", headers=bearer("admin"))
    assert back.status_code == 200 and back.json()["action"] == "rollback"
    assert _predict(client, project, bearer("annotator"), {"texts": ["hello"]}).json()["model_version"] == 1

    history = client.get(f"{API}/projects/{project.slug}/deployment", headers=bearer("reviewer")).json()
    assert [(item["action"], item["model_version"]) for item in history] == [
        ("rollback", 1),
        ("override", 2),
        ("publish", 1),
    ]
    gate = client.get(f"{API}/projects/{project.slug}/models/2/gate", headers=bearer("reviewer")).json()
    assert gate[0]["passed"] is False and gate[0]["against"] == 1
    assert {check["name"] for check in gate[0]["checks"]} == {"holdout_size", "macro_f1", "class_recall", "rules"}
    assert client.get(f"{API}/projects/{project.slug}/models/2/gate", headers=bearer("annotator")).status_code == 403


def test_a_published_model_whose_artifact_was_altered_answers_503_with_a_reason(
    client, project, served, bearer, settings
):
    from pathlib import Path

    from models_app.models import Deployment

    version = Deployment.objects.get(project=project).model_version
    (Path(settings.ARTIFACT_DIR) / version.artifact_path).write_bytes(b"not the model")
    services.model_cache_clear()
    response = _predict(client, project, bearer("annotator"), {"texts": ["hello"]})
    assert response.status_code == 503
    assert "does not match its recorded checksum" in response.json()["detail"]
