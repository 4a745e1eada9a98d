"""The LLM review desk: who may open it, its filters and counts, bulk and single reviews through the page, escaping."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from labeling import services
from labeling.models import Annotation, AnnotationKind, AnnotationStatus
from labeling.services.llm_labels import ERROR_NOT_FOUND, ERROR_NOT_PENDING, LLMLabel
from labeling.views.llm_review import (
    ERROR_CHOOSE_LABEL,
    ERROR_CONFIDENCE,
    ERROR_NOTHING_SELECTED,
    MESSAGE_CORRECTED,
    REVIEWED_EVENT,
)
from tests.models_app.factories import examples_create

pytestmark = pytest.mark.django_db

WHO = ["anonymous", "outsider", "annotator", "reviewer", "admin", "global_admin"]
RANK = {"annotator": 1, "reviewer": 2, "admin": 3, "global_admin": 3}
SCRIPT = "<script>alert(1)</script>"
HTMX = {"HX-Request": "true"}


def _url(name: str, project, query: str = "") -> str:
    url = reverse(f"labeling:{name}", kwargs={"slug": project.slug})
    return f"{url}?{query}" if query else url


def _expected_status(who: str, allowed_status: int = 200) -> int:
    """Anonymous users go to login, non-members get 404, annotators the 403 page."""
    if who == "anonymous":
        return 302
    if who == "outsider":
        return 404
    return allowed_status if RANK[who] >= RANK["reviewer"] else 403


def _suggest(project, examples, *, labeler="smollm2", confidence=0.8, label="spam", model_label=None):
    services.llm_labels_store(
        project=project,
        labeler=labeler,
        model="SmolLM2-135M-Instruct",
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
    )
    return list(
        Annotation.objects.filter(example__in=examples, labeler_name=labeler, kind=AnnotationKind.LLM).order_by("id")
    )


def _ids(html: str) -> set[int]:
    """The LLM label ids the desk's table shows, read from its rows."""
    return {int(value) for value in re.findall(r'data-llm-id="(\d+)"', html)}


@pytest.fixture
def desk_data(project):
    """Pending labels that vary in labeler, label, confidence and agreement with the model, and one reviewed."""
    examples = examples_create(project, [f"comment number {n}" for n in range(6)])
    agree = _suggest(project, examples[:2], confidence=0.9, model_label="spam")
    disagree = _suggest(project, examples[2:3], confidence=0.55, model_label="ham")
    unknown = _suggest(project, examples[3:4], confidence=0.7, label="ham")
    other = _suggest(project, examples[4:5], labeler="minilm", confidence=0.6)
    accepted = _suggest(project, examples[5:6], confidence=0.95)
    Annotation.objects.filter(pk=accepted[0].pk).update(status=AnnotationStatus.ACCEPTED)
    return {"agree": agree, "disagree": disagree, "unknown": unknown, "other": other, "accepted": accepted}


@pytest.mark.parametrize("who", WHO)
def test_role_matrix_for_the_desk_and_its_actions(client_for, users, project, desk_data, who):
    client = client_for(None if who == "anonymous" else users[who])
    assert client.get(_url("llm_review", project)).status_code == _expected_status(who)
    pk = desk_data["agree"][0].pk
    response = client.post(_url("llm_review_act", project), {"ids": [pk], "action": "accept"})
    assert response.status_code == _expected_status(who, allowed_status=303)
    accepted = response.status_code == 303
    assert Annotation.objects.get(pk=pk).status == ("accepted" if accepted else "pending")
    if response.status_code == 403:
        assert f"needs the reviewer role in {project.name}" in response.content.decode()


def test_the_desk_shows_pending_labels_by_default_with_counts_and_the_keys(client_for, users, project, desk_data):
    response = client_for(users["reviewer"]).get(_url("llm_review", project))
    html = response.content.decode()
    pending = {a.pk for key in ("agree", "disagree", "unknown", "other") for a in desk_data[key]}
    assert response.status_code == 200 and _ids(html) == pending
    assert 'id="llm-counts"' in html and "Pending, LLM and model disagree" in html
    assert "<dt>Pending</dt><dd>5</dd>" in html and "<dt>Accepted</dt><dd>1</dd>" in html
    assert 'src="/static/js/llm_review.js"' in html and "correct to spam" in html
    assert "agrees" in html and "disagrees" in html and "no prediction" in html
    assert 'form="llm-bulk"' in html and "data-select-all" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("label=ham", ["unknown"]),
        ("labeler=minilm", ["other"]),
        ("min_confidence=0.65&max_confidence=0.8", ["unknown"]),
        ("agreement=disagree", ["disagree"]),
        ("agreement=agree", ["agree"]),
        ("agreement=unknown", ["unknown", "other"]),
        ("status=accepted", ["accepted"]),
        ("status=", ["agree", "disagree", "unknown", "other", "accepted"]),
    ],
)
def test_filters_narrow_the_table_and_keep_their_values(client_for, users, project, desk_data, query, expected):
    response = client_for(users["reviewer"]).get(_url("llm_review", project, query), headers=HTMX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and 'id="results"' in html
    assert _ids(html) == {a.pk for key in expected for a in desk_data[key]}
    # The action forms post back with the same filters, so the refreshed table keeps them.
    assert f"llm/review/act/?{query.replace('&', '&amp;')}" in html


def test_a_bad_filter_says_why(client_for, users, project, desk_data):
    client = client_for(users["reviewer"])
    response = client.get(_url("llm_review", project, "min_confidence=1.5"))
    assert response.status_code == 400
    assert ERROR_CONFIDENCE.format(name="min_confidence") in response.content.decode()
    response = client.get(_url("llm_review", project, "agreement=maybe"), headers=HTMX)
    assert "agreement must be one of: agree, disagree, unknown." in response.content.decode()
    assert _ids(response.content.decode()) == set()


def test_bulk_accept_by_htmx_changes_statuses_and_reports_skipped_ids(client_for, users, project, desk_data):
    agree = [a.pk for a in desk_data["agree"]]
    already = desk_data["accepted"][0].pk
    response = client_for(users["reviewer"]).post(
        _url("llm_review_act", project, "status=pending"),
        {"ids": [*agree, already, 999999], "action": "accept"},
        headers=HTMX,
    )
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    statuses = dict(Annotation.objects.filter(pk__in=agree).values_list("pk", "status"))
    assert set(statuses.values()) == {"accepted"}
    assert set(Annotation.objects.filter(pk__in=agree).values_list("reviewed_by", flat=True)) == {users["reviewer"].pk}
    assert "Accepted 2 LLM labels. Skipped 2:" in html
    assert ERROR_NOT_PENDING.format(id=already, status="accepted") in html
    assert ERROR_NOT_FOUND.format(id=999999) in html
    assert not _ids(html) & set(agree)  # gone from the pending table
    assert 'id="llm-counts" aria-label="LLM labels by status" hx-swap-oob="true"' in html
    assert "<dt>Accepted</dt><dd>3</dd>" in html
    assert REVIEWED_EVENT in response["HX-Trigger"]


def test_bulk_reject_by_a_plain_form_redirects_back_with_the_filters_and_a_message(
    client_for, users, project, desk_data
):
    client = client_for(users["reviewer"])
    ids = [desk_data["disagree"][0].pk, desk_data["unknown"][0].pk]
    response = client.post(_url("llm_review_act", project, "agreement=disagree"), {"ids": ids, "action": "reject"})
    assert response.status_code == 303
    assert response["Location"] == _url("llm_review", project, "agreement=disagree")
    assert set(Annotation.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"rejected"}
    page = client.get(response["Location"]).content.decode()
    assert "Rejected 2 LLM labels." in page


def test_nothing_selected_or_a_bad_action_is_explained(client_for, users, project, desk_data):
    client = client_for(users["reviewer"])
    html = client.post(_url("llm_review_act", project), {"action": "accept"}, headers=HTMX).content.decode()
    assert escape(ERROR_NOTHING_SELECTED) in html
    pk = desk_data["agree"][0].pk
    html = client.post(_url("llm_review_act", project), {"ids": [pk], "action": "drop"}, headers=HTMX).content.decode()
    assert "action must be one of: accept, reject." in html
    assert Annotation.objects.get(pk=pk).status == "pending"


def test_correcting_a_label_creates_the_reviewer_s_human_label(client_for, users, project, desk_data):
    suggestion = desk_data["agree"][0]
    client = client_for(users["reviewer"])
    html = client.post(
        _url("llm_review_act", project), {"id": suggestion.pk, "label": "ham"}, headers=HTMX
    ).content.decode()
    suggestion.refresh_from_db()
    assert suggestion.status == "rejected" and suggestion.reviewed_by_id == users["reviewer"].pk
    mine = Annotation.objects.get(example_id=suggestion.example_id, kind=AnnotationKind.HUMAN)
    assert (mine.author_id, mine.label.name, mine.status) == (users["reviewer"].pk, "ham", "submitted")
    assert MESSAGE_CORRECTED.format(id=suggestion.pk, example_id=suggestion.example_id, label="ham") in html
    # No label chosen: nothing changes and the notice says what to do.
    other = desk_data["agree"][1]
    html = client.post(_url("llm_review_act", project), {"id": other.pk, "label": ""}, headers=HTMX).content.decode()
    assert ERROR_CHOOSE_LABEL.format(id=other.pk) in html
    assert Annotation.objects.get(pk=other.pk).status == "pending"


def test_example_text_is_escaped_and_long_texts_fold(client_for, users, project):
    examples = examples_create(project, [f"{SCRIPT} buy now", "long " * 100])
    _suggest(project, examples)
    html = client_for(users["reviewer"]).get(_url("llm_review", project)).content.decode()
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; buy now" in html
    assert "Show all 500 characters" in html


def test_empty_states_explain_where_llm_labels_come_from(client_for, users, project, desk_data):
    client = client_for(users["reviewer"])
    llm_page = reverse("models_app:llm", kwargs={"slug": project.slug})
    Annotation.objects.filter(kind=AnnotationKind.LLM).delete()
    html = client.get(_url("llm_review", project)).content.decode()
    assert "No LLM labels yet" in html and f'href="{llm_page}"' in html
    html = client.get(_url("llm_review", project, "label=ham")).content.decode()
    assert "No LLM labels match these filters" in html


def test_pages_hold_fifty_rows(client_for, users, project):
    _suggest(project, examples_create(project, [f"text {n}" for n in range(53)]))
    client = client_for(users["reviewer"])
    first = client.get(_url("llm_review", project, "order=id"), headers=HTMX).content.decode()
    second = client.get(_url("llm_review", project, "order=id&page=2"), headers=HTMX).content.decode()
    assert len(_ids(first)) == 50 and len(_ids(second)) == 3 and not _ids(first) & _ids(second)
    assert "Page 1 of 2" in first


def test_the_nav_links_to_the_llm_page_for_reviewers_only(client_for, users, project):
    overview = reverse("labeling:project_overview", kwargs={"slug": project.slug})
    link = f'href="{reverse("models_app:llm", kwargs={"slug": project.slug})}"'
    assert link in client_for(users["reviewer"]).get(overview).content.decode()
    assert link not in client_for(users["annotator"]).get(overview).content.decode()
