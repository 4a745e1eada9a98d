"""The annotate page: who may use it, claiming and showing an item safely, labeling by htmx and by plain form,
idempotent submits, skip, undo, the lease heartbeat, the empty state and suggestions."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from labeling import services
from labeling.models import (
    Annotation,
    AnnotationEvent,
    AnnotationEventKind,
    AnnotationKind,
    AnnotationStatus,
    Example,
    Label,
    QueueItem,
    QueueState,
)
from labeling.services.annotations import ERROR_NOTHING_TO_UNDO, ERROR_UNKNOWN_LABEL
from labeling.views.annotate import NOTE_LEASE_LAPSED, PROGRESS_EVENT
from tests.labeling.factories import run_import

WHO = ["anonymous", "outsider", "annotator", "reviewer", "admin", "global_admin"]
PAYLOAD = "<script>alert(1)</script><b>bold?</b>"
CSV = (
    "text,date,label\n"
    "Already labeled by the import,2024-01-01T10:00:00Z,ham\n"
    f'"{PAYLOAD}",2024-01-02T10:00:00Z,\n'
    "Check out my channel for free gift cards,2024-01-03T10:00:00Z,\n"
    "I have listened to this every day,2024-01-04T10:00:00Z,\n"
)
HTMX = {"HX-Request": "true"}
LEASE = re.compile(r'data-lease-id="([0-9a-f-]{36})"')
EXAMPLE = re.compile(r'data-example-id="(\d+)"')


@pytest.fixture
def queued(project):
    """Import four rows; the three without a label are queued, the payload row first."""
    run_import(project, CSV)
    QueueItem.objects.filter(example__text=PAYLOAD).update(priority=10.0)
    return list(QueueItem.objects.filter(project=project).order_by("-priority", "id"))


def _url(name: str, project) -> str:
    return reverse(f"labeling:{name}", kwargs={"slug": project.slug})


def _card(response) -> tuple[str, int]:
    """Return the lease id and example id the rendered card carries."""
    html = response.content.decode()
    return LEASE.search(html).group(1), int(EXAMPLE.search(html).group(1))


def _progress(response) -> dict[str, int]:
    return json.loads(response["HX-Trigger"])[PROGRESS_EVENT]


def _submit(client, project, response, label: str = "spam", **headers):
    lease, example = _card(response)
    data = {"lease_id": lease, "example_id": example, "label": label}
    return client.post(_url("annotate_submit", project), data, headers=headers)


# Who may use the page


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("annotate", 200),
        ("annotate_submit", 303),
        ("annotate_skip", 303),
        ("annotate_undo", 303),
        ("annotate_heartbeat", 204),
    ],
)
def test_role_matrix(client_for, users, project, queued, name, allowed, who):
    user = None if who == "anonymous" else users[who]
    client = client_for(user)
    url = _url(name, project)
    data = {}
    if who not in {"anonymous", "outsider"} and name != "annotate":
        claim = services.queue_claim_next(project=project, user=user)
        data = {"lease_id": str(claim.item.lease_id), "example_id": claim.item.example_id, "label": "ham"}
    elif who == "outsider":
        item = queued[0]
        data = {"lease_id": "0" * 32, "example_id": item.example_id, "label": "ham"}

    response = client.get(url) if name == "annotate" else client.post(url, data)

    if who == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
    elif who == "outsider":
        assert response.status_code == 404
    else:
        assert response.status_code == allowed
    if who in {"anonymous", "outsider"}:
        assert not Annotation.objects.filter(kind=AnnotationKind.HUMAN).exists()
        assert not QueueItem.objects.filter(state=QueueState.LEASED).exists()
        assert not AnnotationEvent.objects.exists()


def test_a_get_is_refused_on_the_action_urls(client_for, users, project):
    client = client_for(users["annotator"])

    for name in ("annotate_submit", "annotate_skip", "annotate_undo", "annotate_heartbeat"):
        assert client.get(_url(name, project)).status_code == 405


# Showing an item


def test_get_claims_an_item_and_shows_its_text_escaped(client_for, users, project, queued):
    response = client_for(users["annotator"]).get(_url("annotate", project))

    html = response.content.decode()
    lease, example_id = _card(response)
    item = QueueItem.objects.get(lease_id=lease)
    assert response.status_code == 200
    assert item.state == QueueState.LEASED and item.lease_owner_id == users["annotator"].pk
    assert Example.objects.get(pk=example_id).text == PAYLOAD
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;bold?&lt;/b&gt;" in html
    assert "<script>alert" not in html and "<b>bold?" not in html
    assert f"Why this item:</strong> {item.reason}" in html
    assert "Advertising or links unrelated to the video." in html
    assert "<kbd>1</kbd>" in html and "<kbd>2</kbd>" in html
    assert "Skip <kbd>s</kbd>" in html and "Undo <kbd>u</kbd>" in html
    assert 'aria-live="polite"' in html and 'id="annotate-keys"' in html
    assert 'data-counter="done">0<' in html and 'data-counter="total">3<' in html
    assert "hx-swap-oob" not in html


def test_reloading_the_page_hands_back_the_same_item(client_for, users, project, queued):
    client = client_for(users["annotator"])

    first = _card(client.get(_url("annotate", project)))
    second = _card(client.get(_url("annotate", project)))

    assert first == second
    assert QueueItem.objects.filter(state=QueueState.LEASED).count() == 1


def test_two_annotators_get_different_items(client_for, users, project, queued):
    mine = _card(client_for(users["annotator"]).get(_url("annotate", project)))
    theirs = _card(client_for(users["reviewer"]).get(_url("annotate", project)))

    assert mine[1] != theirs[1]


def test_a_label_shortcut_takes_its_key_from_skip(client_for, users, project, queued):
    Label.objects.filter(project=project, name="spam").update(shortcut="s")

    html = client_for(users["annotator"]).get(_url("annotate", project)).content.decode()

    assert "<kbd>s</kbd>" in html and 'data-key="s"' in html
    assert "Skip <kbd>s</kbd>" not in html and "Skip</button>" in html


# Labeling


def test_htmx_submit_returns_the_next_card_and_the_counters(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))
    lease, example_id = _card(page)

    response = _submit(client, project, page, "spam", **HTMX)

    html = response.content.decode()
    annotation = Annotation.objects.get(kind=AnnotationKind.HUMAN)
    next_lease, next_example = _card(response)
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="annotate-card"')
    assert "<html" not in html and "annotate-head" not in html
    assert next_lease != lease and next_example != example_id
    assert annotation.example_id == example_id and annotation.label.name == "spam"
    assert annotation.author_id == users["annotator"].pk and str(annotation.lease_id) == lease
    assert f'data-annotation-id="{annotation.pk}"' in html
    assert f'name="annotation_id" value="{annotation.pk}"' in html
    assert _progress(response) == {"done": 1, "total": 3, "remaining": 2, "percent": 33, "today": 1}
    assert 'id="annotate-status" hx-swap-oob="innerHTML"' in html and "Saved ‘spam’." in html
    assert QueueItem.objects.get(lease_id=lease).state == QueueState.DONE


def test_plain_post_redirects_back_to_the_page(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))

    response = _submit(client, project, page, "ham")

    assert response.status_code == 303 and response["Location"] == _url("annotate", project)
    assert Annotation.objects.filter(kind=AnnotationKind.HUMAN, label__name="ham").count() == 1
    follow = client.get(response["Location"])
    assert "Saved ‘ham’." in follow.content.decode()
    assert _card(follow)[0] != _card(page)[0]


def test_a_double_submit_of_one_lease_makes_one_annotation(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))

    first = _submit(client, project, page, "spam", **HTMX)
    second = _submit(client, project, page, "spam", **HTMX)

    assert first.status_code == second.status_code == 200
    assert Annotation.objects.filter(kind=AnnotationKind.HUMAN).count() == 1
    assert _card(first) == _card(second), "the repeat answers with the same next item"
    assert _progress(second)["done"] == 1 and _progress(second)["today"] == 1


def test_a_second_label_for_the_same_lease_is_refused_with_a_message(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))
    _submit(client, project, page, "spam", **HTMX)

    response = _submit(client, project, page, "ham", **HTMX)

    assert response.status_code == 200
    assert "You already labeled this example as &#x27;spam&#x27;" in response.content.decode()
    assert list(Annotation.objects.filter(kind=AnnotationKind.HUMAN).values_list("label__name", flat=True)) == ["spam"]


def test_an_unknown_label_shows_the_error_and_keeps_the_card(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))

    response = _submit(client, project, page, "maybe", **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert _card(response) == _card(page)
    message = ERROR_UNKNOWN_LABEL.format(label="maybe", choices="spam, ham").replace("'", "&#x27;")
    assert message in html and 'class="annotate-note is-error"' in html
    assert not Annotation.objects.filter(kind=AnnotationKind.HUMAN).exists()


def test_an_error_on_a_plain_post_redirects_with_the_message(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))

    response = _submit(client, project, page, "maybe")

    assert response.status_code == 303
    follow = client.get(response["Location"])
    assert "Unknown label &#x27;maybe&#x27;" in follow.content.decode()
    assert _card(follow) == _card(page)


def test_an_example_of_another_project_is_refused(client_for, users, project, other_project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))
    run_import(other_project, "text,date,label\nElsewhere,2024-01-01T10:00:00Z,\n")
    foreign = Example.objects.get(project=other_project)

    response = client.post(
        _url("annotate_submit", project),
        {"lease_id": _card(page)[0], "example_id": foreign.pk, "label": "spam"},
        headers=HTMX,
    )

    assert response.status_code == 200 and _card(response) == _card(page)
    assert "not in this project" in response.content.decode()
    assert not Annotation.objects.filter(kind=AnnotationKind.HUMAN).exists()


def test_a_submit_after_the_lease_expired_is_still_recorded(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))
    lease, example_id = _card(page)
    services.queue_release(user=users["annotator"], lease_id=lease)

    response = _submit(client, project, page, "ham", **HTMX)

    assert response.status_code == 200
    assert Annotation.objects.get(kind=AnnotationKind.HUMAN).example_id == example_id


# Skip


def test_skip_moves_on_and_the_skipped_item_comes_back_last(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))
    skipped_lease, skipped = _card(page)

    response = client.post(_url("annotate_skip", project), {"lease_id": skipped_lease}, headers=HTMX)

    assert response.status_code == 200
    assert _card(response)[1] != skipped
    event = AnnotationEvent.objects.get()
    assert event.kind == AnnotationEventKind.SKIP and event.example_id == skipped
    assert "Skipped" in response.content.decode()
    seen = [_card(response)[1]]
    for _ in range(2):
        response = _submit(client, project, response, "ham", **HTMX)
        seen.append(_card(response)[1]) if 'data-lease-id="' in response.content.decode() else None
    assert seen[-1] == skipped, "the skipped item is served after every other one"
    assert len(set(seen)) == 3


def test_skip_of_a_lapsed_lease_says_so_and_shows_an_item(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))
    services.queue_release(user=users["annotator"], lease_id=_card(page)[0])

    response = client.post(_url("annotate_skip", project), {"lease_id": _card(page)[0]}, headers=HTMX)

    assert response.status_code == 200
    assert NOTE_LEASE_LAPSED.replace("'", "&#x27;") in response.content.decode()
    assert LEASE.search(response.content.decode())


# Undo


def test_undo_withdraws_the_label_and_shows_its_item_again(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))
    _, example_id = _card(page)
    labeled = _submit(client, project, page, "spam", **HTMX)
    annotation = Annotation.objects.get(kind=AnnotationKind.HUMAN)

    response = client.post(_url("annotate_undo", project), {"annotation_id": annotation.pk}, headers=HTMX)

    html = response.content.decode()
    annotation.refresh_from_db()
    assert response.status_code == 200
    assert annotation.status == AnnotationStatus.WITHDRAWN
    event = AnnotationEvent.objects.get()
    assert event.kind == AnnotationEventKind.UNDO and event.annotation_id == annotation.pk
    assert _card(response)[1] == example_id, "the undone item comes back first"
    assert "Undid your label ‘spam’ — choose again" in html
    assert _progress(labeled)["done"] == 1 and _progress(response) == {
        "done": 0,
        "total": 3,
        "remaining": 3,
        "percent": 0,
        "today": 0,
    }


def test_a_double_pressed_undo_undoes_one_label(client_for, users, project, queued):
    client = client_for(users["annotator"])
    first = _submit(client, project, client.get(_url("annotate", project)), "spam", **HTMX)
    _submit(client, project, first, "ham", **HTMX)
    last = Annotation.objects.filter(kind=AnnotationKind.HUMAN).latest("id")

    responses = [
        client.post(_url("annotate_undo", project), {"annotation_id": last.pk}, headers=HTMX) for _ in range(2)
    ]

    statuses = dict(Annotation.objects.filter(kind=AnnotationKind.HUMAN).values_list("label__name", "status"))
    assert statuses == {"spam": AnnotationStatus.SUBMITTED, "ham": AnnotationStatus.WITHDRAWN}
    assert AnnotationEvent.objects.filter(kind=AnnotationEventKind.UNDO).count() == 1
    assert _card(responses[0]) == _card(responses[1])
    assert f'name="annotation_id" value="{last.pk}"' in responses[1].content.decode()


def test_undo_without_an_id_withdraws_the_users_last_label(client_for, users, project, queued):
    client = client_for(users["annotator"])
    first = _submit(client, project, client.get(_url("annotate", project)), "spam", **HTMX)
    _submit(client, project, first, "ham", **HTMX)

    response = client.post(_url("annotate_undo", project), {"annotation_id": ""})

    assert response.status_code == 303
    assert Annotation.objects.get(status=AnnotationStatus.WITHDRAWN).label.name == "ham"
    assert "Undid your label ‘ham’" in client.get(response["Location"]).content.decode()


def test_undo_with_nothing_to_undo_is_a_quiet_message(client_for, users, project, queued):
    client = client_for(users["annotator"])
    page = client.get(_url("annotate", project))

    response = client.post(_url("annotate_undo", project), {"annotation_id": ""}, headers=HTMX)

    assert response.status_code == 200
    assert f'<p class="annotate-note is-info">{ERROR_NOTHING_TO_UNDO}</p>' in response.content.decode()
    assert _card(response) == _card(page)
    assert not AnnotationEvent.objects.exists()


def test_undo_of_someone_elses_label_is_refused(client_for, users, project, queued):
    reviewer = client_for(users["reviewer"])
    _submit(reviewer, project, reviewer.get(_url("annotate", project)), "spam", **HTMX)
    theirs = Annotation.objects.get(kind=AnnotationKind.HUMAN)

    response = client_for(users["annotator"]).post(
        _url("annotate_undo", project), {"annotation_id": theirs.pk}, headers=HTMX
    )

    theirs.refresh_from_db()
    assert response.status_code == 200 and "is-error" in response.content.decode()
    assert theirs.status == AnnotationStatus.SUBMITTED


# Heartbeat


def test_heartbeat_extends_the_lease_then_stops_once_it_is_gone(client_for, users, project, queued):
    client = client_for(users["annotator"])
    lease, _ = _card(client.get(_url("annotate", project)))
    QueueItem.objects.filter(lease_id=lease).update(lease_expires_at=QueueItem.objects.get(lease_id=lease).leased_at)

    alive = client.post(_url("annotate_heartbeat", project), {"lease_id": lease}, headers=HTMX)

    assert alive.status_code == 204 and alive.content == b""
    assert QueueItem.objects.get(lease_id=lease).lease_expires_at > QueueItem.objects.get(lease_id=lease).leased_at
    services.queue_release(user=users["annotator"], lease_id=lease)

    gone = client.post(_url("annotate_heartbeat", project), {"lease_id": lease}, headers=HTMX)

    html = gone.content.decode()
    assert gone.status_code == 286
    assert 'id="annotate-status" hx-swap-oob="innerHTML"' in html
    assert NOTE_LEASE_LAPSED.replace("'", "&#x27;") in html
    assert f'href="{_url("annotate", project)}"' in html


def test_heartbeat_for_another_users_lease_stops(client_for, users, project, queued):
    lease, _ = _card(client_for(users["reviewer"]).get(_url("annotate", project)))

    response = client_for(users["annotator"]).post(_url("annotate_heartbeat", project), {"lease_id": lease})

    assert response.status_code == 286


# Empty state


def test_empty_queue_shows_a_friendly_state(client_for, users, project):
    response = client_for(users["annotator"]).get(_url("annotate", project))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Nothing left for you to label right now" in html
    assert f'href="{reverse("labeling:project_overview", kwargs={"slug": project.slug})}"' in html
    assert "data-lease-id" not in html and "data-heartbeat" not in html
    assert 'data-action="undo"' in html


def test_labeling_the_last_item_shows_the_empty_state_with_counts(client_for, users, project):
    run_import(project, "text,date,label\nOnly one,2024-01-01T10:00:00Z,\n")
    client = client_for(users["annotator"])

    response = _submit(client, project, client.get(_url("annotate", project)), "ham", **HTMX)

    html = response.content.decode()
    assert "Nothing left for you to label right now" in html
    assert "1 of 1 label in this project are done" in html
    assert _progress(response) == {"done": 1, "total": 1, "remaining": 0, "percent": 100, "today": 1}
    annotation = Annotation.objects.get(kind=AnnotationKind.HUMAN)
    assert f'name="annotation_id" value="{annotation.pk}"' in html, "the last label can still be undone"


# Suggestions


def _suggest(project, queued, label_name: str, confidence: float, source: str = "model v3") -> None:
    QueueItem.objects.filter(project=project).update(
        suggested_label=Label.objects.get(project=project, name=label_name),
        suggested_confidence=confidence,
        suggestion_source=source,
    )


def _show_suggestions(project) -> None:
    project.settings = {"labeling": {"show_suggestions": True}}
    project.save()


def test_suggestions_are_hidden_by_default(client_for, users, project, queued):
    _suggest(project, queued, "spam", 0.82)

    html = client_for(users["annotator"]).get(_url("annotate", project)).content.decode()

    assert "Suggestion" not in html and "data-suggested" not in html and "is-selected" not in html
    assert "model v3" not in html


def test_suggestions_show_and_preselect_when_turned_on(client_for, users, project, queued):
    _suggest(project, queued, "spam", 0.82)
    _show_suggestions(project)

    html = client_for(users["annotator"]).get(_url("annotate", project)).content.decode()

    assert "Suggestion: <strong>spam</strong> (0.82, from model v3)" in html
    selected = re.findall(r'<button[^>]*class="label-button is-selected"[^>]*>', html)
    assert len(selected) == 1 and 'value="spam"' in selected[0] and 'data-suggested="true"' in selected[0]


def test_without_a_ranked_suggestion_the_most_confident_llm_label_is_shown(client_for, users, project, queued):
    _show_suggestions(project)
    example = queued[0].example
    ham, spam = (Label.objects.get(project=project, name=name) for name in ("ham", "spam"))
    # One standing label per labeler and example: two labelers, one of them also rejected once.
    for label, confidence, status, labeler in [
        (spam, 0.55, AnnotationStatus.PENDING, "smollm2"),
        (ham, 0.91, AnnotationStatus.ACCEPTED, "gpt-judge"),
        (spam, 0.99, AnnotationStatus.REJECTED, "gpt-judge"),
    ]:
        Annotation.objects.create(
            example=example,
            label=label,
            kind=AnnotationKind.LLM,
            labeler_name=labeler,
            confidence=confidence,
            status=status,
        )

    html = client_for(users["annotator"]).get(_url("annotate", project)).content.decode()

    assert _card_example(html) == example.pk
    assert "Suggestion: <strong>ham</strong> (0.91, from gpt-judge)" in html
    assert re.search(r'<button[^>]*value="ham"[^>]*class="label-button is-selected"', html, re.S)


def _card_example(html: str) -> int:
    return int(EXAMPLE.search(html).group(1))


def test_an_htmx_request_after_the_session_expired_sends_the_whole_page_to_login(project):
    from django.test import Client

    response = Client().post(
        f"/p/{project.slug}/annotate/submit/",
        {"label": "spam"},
        headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver/p/{project.slug}/annotate/"},
    )
    assert response.status_code == 204
    assert response["HX-Redirect"].startswith("/accounts/login/?next=")
    assert "annotate" in response["HX-Redirect"] and "submit" not in response["HX-Redirect"]
    plain = Client().get(f"/p/{project.slug}/annotate/")
    assert plain.status_code == 302 and plain["Location"].startswith("/accounts/login/")
