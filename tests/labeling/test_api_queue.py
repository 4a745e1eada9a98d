"""The queue in the JSON API: claim → label → release, with roles, idempotency and clear errors."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from django.test import Client

from labeling import services
from labeling.models import Annotation, AnnotationStatus, QueueItem, QueueState
from labeling.services.annotations import ERROR_NOTHING_TO_UNDO

from .factories import run_import

pytestmark = pytest.mark.django_db
API = "/api/v1"


def bearer(raw: str) -> dict[str, str]:
    return {"authorization": f"Bearer {raw}"}


@pytest.fixture
def tokens(users) -> dict[str, str]:
    return {role: services.api_token_create(user=user, name="tests")[1] for role, user in users.items()}


@pytest.fixture
def queued(project):
    rows = ["text,date,label"] + [f"comment {n} <a href='x'>link</a>,2024-02-{n + 1:02d}," for n in range(6)]
    run_import(project, "\n".join(rows) + "\n")
    return project


def _call(token: str | None, method: str, path: str, body: dict | None = None):
    headers = bearer(token) if token else {}
    client = Client()
    if method == "post":
        return client.post(f"{API}{path}", body or {}, content_type="application/json", headers=headers)
    return client.get(f"{API}{path}", headers=headers)


@pytest.mark.parametrize(
    ("caller", "status"),
    [(None, 401), ("outsider", 404), ("annotator", 200), ("reviewer", 200), ("admin", 200), ("global_admin", 200)],
)
def test_claim_role_matrix(queued, tokens, caller, status):
    response = _call(tokens.get(caller), "post", "/projects/reviews/queue/claim")
    assert response.status_code == status, response.content
    if status != 200:
        assert response.json()["detail"]


def test_claim_contract_and_204_when_nothing_is_left(queued, tokens, users):
    response = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim")
    body = response.json()
    assert {"example_id", "text", "reason", "lease_id", "lease_expires_at"} <= set(body)
    item = QueueItem.objects.get(lease_id=uuid.UUID(body["lease_id"]))
    assert item.state == QueueState.LEASED and item.lease_owner_id == users["annotator"].pk
    assert item.example_id == body["example_id"] and "<a href='x'>link</a>" in body["text"]
    assert body["reason"].startswith("Exploration")
    assert abs((datetime.fromisoformat(body["lease_expires_at"]) - item.lease_expires_at).total_seconds()) < 0.001
    assert body["labels"] == ["ham", "spam"] or body["labels"] == ["spam", "ham"]
    # Claiming again while holding the lease hands back the same one.
    again = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim").json()
    assert again["lease_id"] == body["lease_id"] and again["resumed"] is True

    labeled = 0
    while True:
        claim = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim")
        if claim.status_code == 204:
            assert claim.content == b""
            break
        data = claim.json()
        response = _call(
            tokens["annotator"],
            "post",
            f"/examples/{data['example_id']}/annotations",
            {"label": "spam", "lease_id": data["lease_id"]},
        )
        assert response.status_code == 201, response.content
        labeled += 1
    assert labeled == 6


def test_submit_is_201_then_200_on_repeat_and_409_on_a_different_label(queued, tokens, users):
    claim = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim").json()
    path = f"/examples/{claim['example_id']}/annotations"
    first = _call(tokens["annotator"], "post", path, {"label": "spam", "lease_id": claim["lease_id"]})
    assert first.status_code == 201
    body = first.json()
    assert body["label"] == "spam" and body["author"] == "project-annotator" and body["kind"] == "human"
    repeat = _call(tokens["annotator"], "post", path, {"label": "spam", "lease_id": claim["lease_id"]})
    assert repeat.status_code == 200 and repeat.json()["id"] == body["id"]
    other = _call(tokens["annotator"], "post", path, {"label": "ham", "lease_id": claim["lease_id"]})
    assert other.status_code == 409 and "undo" in other.json()["detail"]
    assert Annotation.objects.filter(author=users["annotator"]).count() == 1
    assert QueueItem.objects.get(lease_id=uuid.UUID(claim["lease_id"])).state == QueueState.DONE


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"label": "eggs"}, 400, "Unknown label 'eggs'"),
        ({}, 422, "label"),
        ({"label": "spam", "lease_id": "not-a-uuid"}, 422, "lease_id"),
        ({"label": "spam", "lease_id": str(uuid.uuid4())}, 201, ""),
    ],
)
def test_submit_validates_its_body(queued, tokens, body, status, needle):
    example_id = QueueItem.objects.first().example_id
    response = _call(tokens["annotator"], "post", f"/examples/{example_id}/annotations", body)
    assert response.status_code == status, response.content
    if needle:
        assert needle in response.content.decode()


def test_submit_checks_membership_and_the_lease_owner(queued, tokens, other_project):
    claim = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim").json()
    path = f"/examples/{claim['example_id']}/annotations"
    assert _call(tokens["outsider"], "post", path, {"label": "spam"}).status_code == 404
    assert _call(None, "post", path, {"label": "spam"}).status_code == 401
    stolen = _call(tokens["reviewer"], "post", path, {"label": "spam", "lease_id": claim["lease_id"]})
    assert stolen.status_code == 404
    assert _call(tokens["annotator"], "post", "/examples/999999/annotations", {"label": "spam"}).status_code == 404


def test_release_returns_the_item_and_puts_it_last_for_the_caller(queued, tokens):
    first = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim").json()
    released = _call(tokens["annotator"], "post", f"/leases/{first['lease_id']}/release")
    assert released.status_code == 200 and released.json()["state"] == "ready"
    assert QueueItem.objects.get(example_id=first["example_id"]).state == QueueState.READY
    assert _call(tokens["annotator"], "post", f"/leases/{first['lease_id']}/release").status_code == 404
    nxt = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim").json()
    assert nxt["example_id"] != first["example_id"]
    # Another annotator is offered the released item first.
    assert (
        _call(tokens["reviewer"], "post", "/projects/reviews/queue/claim").json()["example_id"] == first["example_id"]
    )


def test_release_and_heartbeat_of_someone_elses_lease_are_404(queued, tokens):
    claim = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim").json()
    for action in ("release", "heartbeat"):
        assert _call(tokens["reviewer"], "post", f"/leases/{claim['lease_id']}/{action}").status_code == 404
        assert _call(tokens["outsider"], "post", f"/leases/{claim['lease_id']}/{action}").status_code == 404
        assert _call(None, "post", f"/leases/{claim['lease_id']}/{action}").status_code == 401
    beat = _call(tokens["annotator"], "post", f"/leases/{claim['lease_id']}/heartbeat")
    assert beat.status_code == 200
    assert datetime.fromisoformat(beat.json()["lease_expires_at"]) >= datetime.fromisoformat(claim["lease_expires_at"])


def test_undo_withdraws_and_leases_back(queued, tokens, users):
    claim = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim").json()
    made = _call(
        tokens["annotator"],
        "post",
        f"/examples/{claim['example_id']}/annotations",
        {"label": "ham", "lease_id": claim["lease_id"]},
    ).json()
    undo = _call(tokens["annotator"], "post", "/projects/reviews/annotations/undo", {})
    assert undo.status_code == 200
    body = undo.json()
    assert body["annotation"]["id"] == made["id"] and body["annotation"]["status"] == "withdrawn"
    assert body["lease"]["example_id"] == claim["example_id"] and body["lease"]["state"] == "leased"
    assert Annotation.objects.get(pk=made["id"]).status == AnnotationStatus.WITHDRAWN
    again = _call(tokens["annotator"], "post", "/projects/reviews/queue/claim").json()
    assert again["example_id"] == claim["example_id"] and again["lease_id"] == body["lease"]["lease_id"]
    nothing = _call(tokens["reviewer"], "post", "/projects/reviews/annotations/undo", {})
    assert nothing.status_code == 404 and nothing.json()["detail"] == ERROR_NOTHING_TO_UNDO


def test_the_openapi_schema_lists_the_queue_endpoints(client):
    paths = client.get(f"{API}/openapi.json").json()["paths"]
    for path in (
        "/api/v1/projects/{slug}/queue/claim",
        "/api/v1/examples/{example_id}/annotations",
        "/api/v1/leases/{lease_id}/release",
    ):
        assert "post" in paths[path]
