"""LLM labels: storing suggestions idempotently, reviewing them in bulk, correcting one, and the JSON API."""

from __future__ import annotations

import pytest

from labeling import services
from labeling.models import Annotation, AnnotationKind, AnnotationStatus, Example, QueueItem
from labeling.services.llm_labels import ERROR_ACTION, ERROR_NOT_PENDING, LLMLabel
from tests.models_app.factories import examples_create

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def bearer(users):
    def make(role: str) -> dict[str, str]:
        _, raw = services.api_token_create(user=users[role])
        return {"authorization": f"Bearer {raw}"}

    return make


def _suggest(project, examples, *, labeler="smollm2", confidence=0.8, label="spam", model_label=None, auto=None):
    return services.llm_labels_store(
        project=project,
        labeler=labeler,
        model="SmolLM2-135M-Instruct.Q4_1.gguf",
        prompt_version="causal-v1",
        rows=[
            LLMLabel(
                example_id=example.pk,
                label=label,
                confidence=confidence,
                probabilities={label: confidence, "ham" if label == "spam" else "spam": 1 - confidence},
                model_label=model_label,
                model_confidence=0.7 if model_label else None,
            )
            for example in examples
        ],
        auto_accept_at=auto,
    )


def test_suggestions_are_stored_once_per_labeler_with_their_provenance(project, users):
    examples = examples_create(project, [f"text {n}" for n in range(3)])
    stored = _suggest(project, examples, model_label="ham")
    assert (stored.created, stored.skipped, stored.auto_accepted) == (3, 0, 0)
    again = _suggest(project, examples)  # a retried chunk
    assert (again.created, again.skipped) == (0, 3)
    other = _suggest(project, examples[:1], labeler="minilm")
    assert other.created == 1
    row = Annotation.objects.filter(labeler_name="smollm2").first()
    assert (row.kind, row.status, row.labeler_model, row.prompt_version) == (
        AnnotationKind.LLM,
        AnnotationStatus.PENDING,
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "causal-v1",
    )
    assert row.model_label.name == "ham" and row.probabilities == {"spam": 0.8, "ham": 0.2}


def test_auto_accept_above_the_threshold_takes_examples_out_of_the_queue(project, users):
    examples = examples_create(project, ["sure one", "unsure one"])
    services.queue_fill(project=project)
    _suggest(project, examples[:1], confidence=0.97, auto=0.9)
    _suggest(project, examples[1:], confidence=0.6, auto=0.9)
    sure, unsure = (Annotation.objects.get(example=e) for e in examples)
    assert (sure.status, sure.auto_accepted) == (AnnotationStatus.ACCEPTED, True)
    assert (unsure.status, unsure.auto_accepted) == (AnnotationStatus.PENDING, False)
    assert not QueueItem.objects.filter(example=examples[0], state="ready").exists()
    assert QueueItem.objects.filter(example=examples[1], state="ready").exists()


def test_bulk_review_accepts_or_rejects_only_pending_labels_of_the_project(project, other_project, users):
    examples = examples_create(project, [f"text {n}" for n in range(4)])
    services.queue_fill(project=project)
    _suggest(project, examples)
    ids = list(Annotation.objects.filter(kind="llm").order_by("id").values_list("pk", flat=True))
    outsider_example = Example.objects.create(project=other_project, text="x", content_hash="x")
    yes = other_project.labels.get(name="yes")
    foreign = Annotation.objects.create(
        example=outsider_example, label=yes, labeler_name="m", kind="llm", status="pending"
    )
    result = services.llm_labels_review(
        project=project, user=users["reviewer"], ids=[*ids[:2], foreign.pk], action="accept"
    )
    assert result.changed == 2 and [s["id"] for s in result.skipped] == [foreign.pk]
    accepted = Annotation.objects.filter(pk__in=ids[:2])
    assert all(a.status == "accepted" and a.reviewed_by_id == users["reviewer"].pk for a in accepted)
    # Accepted examples leave the queue: an accepted LLM label is their label now.
    assert not QueueItem.objects.filter(example__in=examples[:2], state="ready").exists()
    again = services.llm_labels_review(project=project, user=users["reviewer"], ids=ids[:3], action="reject")
    assert again.changed == 1
    assert again.skipped[0]["detail"] == ERROR_NOT_PENDING.format(id=ids[0], status="accepted")
    with pytest.raises(services.LLMReviewError, match=ERROR_ACTION):
        services.llm_labels_review(project=project, user=users["reviewer"], ids=ids, action="maybe")


def test_a_correction_is_the_reviewer_s_own_label_and_the_suggestion_is_kept_as_rejected(project, users):
    examples = examples_create(project, ["free gift card"])
    services.queue_fill(project=project)
    _suggest(project, examples, label="ham")
    suggestion = Annotation.objects.get(kind="llm")
    correction = services.llm_label_correct(
        project=project, user=users["reviewer"], annotation_id=suggestion.pk, label="spam"
    )
    suggestion.refresh_from_db()
    assert suggestion.status == "rejected" and suggestion.reviewed_by_id == users["reviewer"].pk
    assert (correction.kind, correction.label.name, correction.author_id) == ("human", "spam", users["reviewer"].pk)
    assert QueueItem.objects.get(example=examples[0]).state == "done"
    with pytest.raises(services.LLMReviewError):
        services.llm_label_correct(project=project, user=users["reviewer"], annotation_id=suggestion.pk, label="spam")


def test_the_api_lists_filters_and_reviews_llm_labels(client, project, users, bearer):
    examples = examples_create(project, [f"<b>text</b> {n}" for n in range(5)])
    _suggest(project, examples[:3], confidence=0.9, model_label="spam")
    _suggest(project, examples[3:], confidence=0.55, model_label="ham", labeler="other")
    url = f"{API}/projects/{project.slug}/llm-labels"
    assert client.get(url, headers=bearer("annotator")).status_code == 403
    assert client.get(url, headers=bearer("outsider")).status_code == 404
    rows = client.get(url, headers=bearer("reviewer")).json()
    assert len(rows) == 5 and rows[0]["confidence"] == 0.9
    assert set(rows[0]) >= {"id", "example_id", "label", "confidence", "labeler", "model", "prompt_version"}
    disagree = client.get(url, {"agreement": "disagree"}, headers=bearer("reviewer")).json()
    assert {row["labeler"] for row in disagree} == {"other"} and len(disagree) == 2
    confident = client.get(url, {"min_confidence": 0.8}, headers=bearer("reviewer")).json()
    assert len(confident) == 3
    assert client.get(url, {"agreement": "sometimes"}, headers=bearer("reviewer")).status_code == 400

    review = f"{API}/projects/{project.slug}/llm-labels/review"
    ids = [row["id"] for row in confident]
    body = client.post(
        review, {"ids": ids, "action": "accept"}, content_type="application/json", headers=bearer("reviewer")
    )
    assert body.status_code == 200 and body.json()["changed"] == 3
    assert (
        client.get(url, headers=bearer("reviewer")).json()
        == client.get(url, {"status": "pending"}, headers=bearer("reviewer")).json()
    )
    assert len(client.get(url, {"status": "accepted"}, headers=bearer("reviewer")).json()) == 3
    one = disagree[0]["id"]
    fixed = client.post(
        review, {"id": one, "label": "spam"}, content_type="application/json", headers=bearer("reviewer")
    )
    assert fixed.status_code == 200 and fixed.json()["correction_id"]
    bad = client.post(review, {"id": one, "label": "nope"}, content_type="application/json", headers=bearer("reviewer"))
    assert bad.status_code == 400
    mixed = client.post(
        review,
        {"id": one, "label": "spam", "ids": [1], "action": "accept"},
        content_type="application/json",
        headers=bearer("reviewer"),
    )
    assert mixed.status_code == 400
    assert (
        client.post(
            review, {"ids": ids, "action": "accept"}, content_type="application/json", headers=bearer("annotator")
        ).status_code
        == 403
    )
