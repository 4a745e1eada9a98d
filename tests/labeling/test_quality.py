"""The reviewers' pages: quality numbers against the agreement math, conflicts and adjudication, gold, the queue."""

from __future__ import annotations

import random
import re
import statistics
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

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
)
from labeling.selectors import gold as gold_selectors
from labeling.selectors import quality as quality_selectors
from labeling.services import gold as gold_services
from labeling.services.annotations import ERROR_ADJUDICATE_GOLD
from labeling.views.reviewing import (
    ERROR_CHOOSE_LABEL,
    ERROR_NO_SUCH_EXAMPLE,
    ERROR_NOT_GOLD,
    MESSAGE_GOLD_ADDED,
    MESSAGE_GOLD_REMOVED,
    MESSAGE_NOTHING_QUEUED,
    MESSAGE_NOTHING_TO_PROMOTE,
    MESSAGE_PROMOTED,
    MESSAGE_QUEUED,
    MESSAGE_SETTLED,
)
from models_app.ml.agreement import AlphaResult, cohen_kappa, krippendorff_alpha_nominal

from .factories import run_import

pytestmark = pytest.mark.django_db

WHO = ["anonymous", "outsider", "annotator", "reviewer", "admin", "global_admin"]
RANK = {"annotator": 1, "reviewer": 2, "admin": 3, "global_admin": 3}
SCRIPT = "<script>alert(1)</script>"
PAGES = [
    ("quality", "reviewer"),
    ("gold_list", "reviewer"),
    ("queue_overview", "reviewer"),
    ("project_settings", "admin"),
]
# Who labels what: example index -> {annotator index: label}. Example 7 becomes a gold question (answer ham).
VOTES = {
    0: {0: "spam", 1: "spam", 2: "spam"},
    1: {0: "spam", 1: "ham"},
    2: {0: "ham", 1: "ham", 2: "ham"},
    3: {1: "spam", 2: "ham"},
    4: {0: "ham", 2: "ham"},
    5: {0: "spam"},
    6: {0: "spam", 1: "ham", 2: "spam"},
    7: {0: "ham", 1: "spam", 2: "ham"},
}
GOLD_INDEX, GOLD_ANSWER = 7, "ham"
ADJUDICATED_INDEX = 6
OPEN_CONFLICTS = {1, 3}


def _url(name: str, project, **kwargs) -> str:
    return reverse(f"labeling:{name}", kwargs={"slug": project.slug, **kwargs})


def _expected(minimum: str, who: str, allowed: int = 200) -> int:
    if who == "anonymous":
        return 302
    if who == "outsider":
        return 404
    return allowed if RANK[who] >= RANK[minimum] else 403


def _csv(texts: list[str], label: str = "") -> str:
    rows = ["text,date,label"]
    rows += [f'"{text}",2024-02-{1 + number % 28:02d},{label}' for number, text in enumerate(texts)]
    return "\n".join(rows) + "\n"


def _examples(project, count: int, prefix: str = "comment") -> list[Example]:
    run_import(project, _csv([f"{prefix} {number}" for number in range(count)]))
    return list(Example.objects.filter(project=project, text__startswith=f"{prefix} ").order_by("id"))


@pytest.fixture
def annotators(project, make_user):
    people = []
    for number in range(3):
        user = make_user(f"ann-{number}")
        services.member_add(project=project, username=user.username, role="annotator")
        people.append(user)
    return people


@pytest.fixture
def labeled(project, annotators, users):
    """Eight examples labeled as in VOTES; one made gold, one adjudicated; returns the examples."""
    examples = _examples(project, len(VOTES))
    services.gold_set(user=users["reviewer"], example=examples[GOLD_INDEX], label=GOLD_ANSWER)
    for index, votes in VOTES.items():
        for person, label in votes.items():
            services.annotation_submit(user=annotators[person], example=examples[index], label=label)
    services.annotation_adjudicate(user=users["reviewer"], example=examples[ADJUDICATED_INDEX], label="spam")
    return examples


def _triples(examples, annotators) -> list[tuple[int, int, str]]:
    return [
        (examples[index].pk, annotators[person].pk, label)
        for index, votes in VOTES.items()
        for person, label in votes.items()
    ]


def _row(page: str, needle: str) -> str:
    """Return the table row of the page that contains `needle`."""
    rows = [row for row in page.split("<tr>") if needle in row]
    assert rows, needle
    return rows[0].split("</tr>")[0]


# Who may open what


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(("name", "minimum"), PAGES)
def test_role_matrix_for_the_pages(client_for, users, project, name, minimum, who):
    client = client_for(None if who == "anonymous" else users[who])

    response = client.get(_url(name, project))

    assert response.status_code == _expected(minimum, who)
    if who == "anonymous":
        assert response["Location"].startswith(reverse("login") + "?next=")
    if response.status_code == 403:
        assert f"needs the {minimum} role in {project.name}" in response.content.decode()


@pytest.mark.parametrize("who", WHO)
def test_role_matrix_for_adjudicating(client_for, users, project, who):
    example = _examples(project, 1)[0]
    client = client_for(None if who == "anonymous" else users[who])

    response = client.post(_url("adjudicate", project, example_id=example.pk), {"label": "spam"})

    assert response.status_code == _expected("reviewer", who, allowed=303)
    settled = Annotation.objects.filter(example=example, kind=AnnotationKind.ADJUDICATED).exists()
    assert settled == (response.status_code == 303)


@pytest.mark.parametrize("who", ["annotator", "reviewer"])
def test_only_admins_may_fill_the_queue(client_for, users, project, who):
    _examples(project, 3)
    QueueItem.objects.all().delete()

    response = client_for(users[who]).post(_url("queue_overview", project), {"action": "fill"})

    assert response.status_code == 403
    assert QueueItem.objects.count() == 0


# Quality numbers


def test_quality_numbers_match_the_agreement_math(client_for, users, project, annotators, labeled):
    triples = _triples(labeled, annotators)
    expected_alpha = krippendorff_alpha_nominal(triples)

    report = quality_selectors.quality_report(project=project)
    page = client_for(users["reviewer"]).get(_url("quality", project)).content.decode()

    assert report.agreement.alpha.alpha == pytest.approx(expected_alpha.alpha)
    assert report.agreement.alpha.n_items == 7 and report.agreement.alpha.n_values == 18
    assert f"{expected_alpha.alpha:.3f}" in page
    assert report.agreement.reading in page
    for first, second in [(0, 1), (0, 2), (1, 2)]:
        shared = sorted(set(_votes_of(first)) & set(_votes_of(second)))
        kappa = cohen_kappa([_votes_of(first)[i] for i in shared], [_votes_of(second)[i] for i in shared])
        names = (annotators[first].username, annotators[second].username)
        pair = next(p for p in report.agreement.pairs if (p.annotator_a, p.annotator_b) == names)
        assert pair.n_items == len(shared)
        assert pair.kappa == pytest.approx(kappa)
        row = _row(page, f'<strong>{names[0]}</strong> <span class="muted">&amp;</span> <strong>{names[1]}</strong>')
        assert f"{kappa:.3f}" in row and f">{len(shared)}<" in row


def _votes_of(person: int) -> dict[int, str]:
    return {index: votes[person] for index, votes in VOTES.items() if person in votes}


def test_reading_follows_krippendorffs_thresholds():
    def reading(alpha):
        return quality_selectors.alpha_reading(AlphaResult(alpha, 5, 10, 0.1, 0.2))

    assert reading(0.85) == quality_selectors.READING_RELIABLE
    assert reading(0.8) == quality_selectors.READING_RELIABLE
    assert reading(0.7) == quality_selectors.READING_TENTATIVE
    assert reading(0.5) == quality_selectors.READING_UNRELIABLE
    assert quality_selectors.alpha_reading(krippendorff_alpha_nominal([])) == quality_selectors.READING_NO_DATA
    assert quality_selectors.alpha_reading(AlphaResult(None, 3, 6, 0.0, 0.0)) == quality_selectors.READING_NO_VARIATION


def test_per_annotator_numbers(client_for, users, project, annotators, labeled):
    first, second, third = annotators
    first_labels = Annotation.objects.filter(author=first, kind=AnnotationKind.HUMAN).order_by("id")
    for annotation, seconds in zip(first_labels, [10, 20, 30, 40, None, None, None], strict=True):
        Annotation.objects.filter(pk=annotation.pk).update(seconds_spent=seconds)
    Annotation.objects.filter(pk=first_labels[0].pk).update(created_at=timezone.now() - timedelta(days=2))
    for kind, count in [(AnnotationEventKind.SKIP, 2), (AnnotationEventKind.UNDO, 1)]:
        for _ in range(count):
            AnnotationEvent.objects.create(project=project, example=labeled[0], actor=second, kind=kind)

    report = {row.username: row for row in quality_selectors.quality_report(project=project).annotators}
    page = client_for(users["reviewer"]).get(_url("quality", project)).content.decode()

    one, two, three = report[first.username], report[second.username], report[third.username]
    assert (one.labels, one.labels_today) == (7, 6)
    assert (two.labels, three.labels) == (6, 6)
    assert one.median_seconds == statistics.median([10, 20, 30, 40])
    assert one.labels_per_active_hour == pytest.approx(3600 / 25)
    assert two.median_seconds is None and two.labels_per_active_hour is None
    assert (one.gold_answered, one.gold_correct, one.gold_accuracy_percent) == (1, 1, 100.0)
    assert (two.gold_answered, two.gold_correct, two.gold_accuracy_percent) == (1, 0, 0.0)
    assert (two.skips, two.undos, one.skips, one.undos) == (2, 1, 0, 0)
    row = _row(page, f"<td><strong>{first.username}</strong></td>")
    assert ">100.0%<" in row and ">25.0 s<" in row and ">144<" in row
    assert ">0.0%<" in _row(page, f"<td><strong>{second.username}</strong></td>")
    assert "labels per active hour" in page.lower() and "3600 divided by the mean" in page


def test_the_report_takes_a_fixed_number_of_queries(users, project, annotators, labeled, django_assert_max_num_queries):
    more = _examples(project, 20, prefix="more")
    for example in more:
        services.annotation_submit(user=annotators[0], example=example, label="spam")
        services.annotation_submit(user=annotators[1], example=example, label="ham")

    with django_assert_max_num_queries(6):
        report = quality_selectors.quality_report(project=project)

    assert report.summary.open == len(OPEN_CONFLICTS) + 20


def test_conflicts_list_exactly_the_disagreeing_unsettled_examples(client_for, users, project, annotators, labeled):
    page = client_for(users["reviewer"]).get(_url("quality", project)).content.decode()

    shown = {int(found) for found in re.findall(r'<article class="conflict" id="conflict-(\d+)"', page)}
    assert shown == {labeled[index].pk for index in OPEN_CONFLICTS}
    summary = quality_selectors.quality_report(project=project).summary
    assert (summary.shared, summary.agreed, summary.open, summary.resolved, summary.gold) == (7, 3, 2, 1, 1)
    assert "Conflicts resolved</dt><dd>1<" in page
    conflict = page.split(f'id="conflict-{labeled[1].pk}"')[1].split("</article>")[0]
    assert f'<strong>spam</strong><span class="provenance">{annotators[0].username}' in conflict
    assert f'<strong>ham</strong><span class="provenance">{annotators[1].username}' in conflict


def test_conflicts_are_capped_with_a_count(client_for, users, project, annotators, monkeypatch):
    examples = _examples(project, 4)
    for example in examples:
        services.annotation_submit(user=annotators[0], example=example, label="spam")
        services.annotation_submit(user=annotators[1], example=example, label="ham")
    monkeypatch.setattr(quality_selectors, "CONFLICTS_SHOWN", 3)

    page = client_for(users["reviewer"]).get(_url("quality", project)).content.decode()

    assert len(re.findall(r'<article class="conflict" id="conflict-', page)) == 3
    assert "The newest 3 of 4" in page
    assert f'id="conflict-{examples[0].pk}"' not in page


def test_empty_quality_page_explains_what_will_appear(client_for, users, project):
    page = client_for(users["admin"]).get(_url("quality", project)).content.decode()

    assert "Not measured yet" in page
    assert "Set overlap to 2 or more in Settings" in page
    assert "No open conflicts" in page
    assert "No one has labeled in this project yet" in page


# Adjudication


def test_adjudicating_by_htmx_replaces_the_row_and_updates_the_counts(client_for, users, project, annotators, labeled):
    example = labeled[1]
    ham = Label.objects.get(project=project, name="ham")

    response = client_for(users["reviewer"]).post(
        _url("adjudicate", project, example_id=example.pk),
        {"label": str(ham.pk), "note": "reads like a genuine comment"},
        headers={"HX-Request": "true"},
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="conflict-{example.pk}"' in body and "settled as <strong>ham</strong>" in body
    assert 'id="conflict-counts"' in body and 'hx-swap-oob="true"' in body
    assert "Open conflicts</dt><dd>1<" in body
    final = Annotation.objects.get(example=example, kind=AnnotationKind.ADJUDICATED)
    assert (final.label_id, final.status, final.author_id) == (ham.pk, AnnotationStatus.ACCEPTED, users["reviewer"].pk)
    event = AnnotationEvent.objects.get(example=example, kind=AnnotationEventKind.ADJUDICATE)
    assert event.detail["note"] == "reads like a genuine comment"
    page = client_for(users["reviewer"]).get(_url("quality", project)).content.decode()
    assert f'id="conflict-{example.pk}"' not in page and f'id="conflict-{labeled[3].pk}"' in page


def test_adjudicating_without_javascript_redirects_back_with_a_message(client_for, users, project, annotators, labeled):
    client = client_for(users["admin"])

    response = client.post(_url("adjudicate", project, example_id=labeled[3].pk), {"label": "spam"})

    assert response.status_code == 303
    assert response["Location"] == _url("quality", project) + "#conflicts"
    page = client.get(response["Location"]).content.decode()
    assert MESSAGE_SETTLED.format(example_id=labeled[3].pk, label="spam") in page
    assert f'id="conflict-{labeled[3].pk}"' not in page
    assert Annotation.objects.get(example=labeled[3], kind=AnnotationKind.ADJUDICATED).label.name == "spam"


def test_adjudicating_without_a_label_changes_nothing(client_for, users, project, annotators, labeled):
    client = client_for(users["reviewer"])
    url = _url("adjudicate", project, example_id=labeled[1].pk)

    htmx = client.post(url, {"label": ""}, headers={"HX-Request": "true"})
    plain = client.post(url, {"label": "maybe"})

    assert htmx.status_code == 200 and ERROR_CHOOSE_LABEL in htmx.content.decode()
    assert f'id="conflict-{labeled[1].pk}"' in htmx.content.decode()
    assert plain.status_code == 303
    assert "Unknown label" in client.get(plain["Location"]).content.decode()
    assert not Annotation.objects.filter(example=labeled[1], kind=AnnotationKind.ADJUDICATED).exists()


def test_adjudicating_an_example_of_another_project_is_404(client_for, users, project, other_project):
    foreign = _examples(other_project, 1)[0]

    response = client_for(users["reviewer"]).post(_url("adjudicate", project, example_id=foreign.pk), {"label": "spam"})

    assert response.status_code == 404
    assert not Annotation.objects.filter(example=foreign, kind=AnnotationKind.ADJUDICATED).exists()


def test_text_from_the_data_is_escaped_on_every_page(client_for, users, project, annotators):
    run_import(project, _csv([SCRIPT]))
    example = Example.objects.get(project=project, text=SCRIPT)
    assert services.queue_claim_next(project=project, user=annotators[2]).item.example_id == example.pk
    services.annotation_submit(user=annotators[0], example=example, label="spam")
    services.annotation_submit(user=annotators[1], example=example, label="ham")
    client = client_for(users["admin"])
    quality_page = client.get(_url("quality", project)).content.decode()
    queue_page = client.get(_url("queue_overview", project)).content.decode()
    services.gold_set(user=users["admin"], example=example, label="spam")
    gold_page = client.get(_url("gold_list", project)).content.decode()

    for page in (quality_page, gold_page):
        assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert SCRIPT not in queue_page and "&lt;script&gt;alert(1)&lt;/script&gt;" in queue_page
    assert annotators[2].username in queue_page


# Gold


def test_gold_add_then_remove(client_for, users, project, annotators):
    example = _examples(project, 1)[0]
    client = client_for(users["reviewer"])

    added = client.post(_url("gold_list", project), {"action": "add", "example_id": example.pk, "label": "ham"})

    assert added.status_code == 303
    gold = Annotation.objects.get(example=example, kind=AnnotationKind.GOLD, status=AnnotationStatus.ACCEPTED)
    assert gold.label.name == "ham"
    page = client.get(_url("gold_list", project)).content.decode()
    assert MESSAGE_GOLD_ADDED.format(example_id=example.pk, label="ham") in page
    assert f"#{example.pk}" in page

    removed = client.post(_url("gold_list", project), {"action": "remove", "example_id": example.pk})

    assert removed.status_code == 303
    gold.refresh_from_db()
    assert gold.status == AnnotationStatus.SUPERSEDED
    page = client.get(_url("gold_list", project)).content.decode()
    assert MESSAGE_GOLD_REMOVED.format(example_id=example.pk) in page
    assert "No gold questions yet" in page


def test_gold_add_rejects_an_example_of_another_project_and_a_bad_label(client_for, users, project, other_project):
    foreign = _examples(other_project, 1)[0]
    own = _examples(project, 1)[0]
    client = client_for(users["reviewer"])

    wrong_project = client.post(_url("gold_list", project), {"action": "add", "example_id": foreign.pk, "label": "ham"})
    wrong_label = client.post(_url("gold_list", project), {"action": "add", "example_id": own.pk, "label": "eggs"})
    not_gold = client.post(_url("gold_list", project), {"action": "remove", "example_id": own.pk})

    assert wrong_project.status_code == 400
    assert ERROR_NO_SUCH_EXAMPLE.format(example_id=foreign.pk) in wrong_project.content.decode()
    assert wrong_label.status_code == 400 and "Select a valid choice" in wrong_label.content.decode()
    assert not Annotation.objects.filter(kind=AnnotationKind.GOLD).exists()
    assert ERROR_NOT_GOLD.format(example_id=own.pk) in client.get(not_gold["Location"]).content.decode()


def test_gold_page_counts_answers_and_share_correct(client_for, users, project, annotators, labeled):
    page = client_for(users["reviewer"]).get(_url("gold_list", project)).content.decode()

    row = _row(page, f"#{labeled[GOLD_INDEX].pk}")
    assert ">3<" in row and "67%" in row and "2 of 3" in row
    summary = gold_selectors.gold_summary(project=project)
    assert summary == {"questions": 1, "answers": 3, "correct": 2, "accuracy_percent": 66.7}
    assert "5%" in page and _url("project_settings", project) not in page


def test_promote_turns_settled_examples_into_gold(client_for, users, project):
    run_import(project, _csv([f"labeled {number}" for number in range(6)], label="spam"))
    client = client_for(users["reviewer"])

    response = client.post(_url("gold_list", project), {"action": "promote", "count": "4"})

    assert response.status_code == 303
    gold = Annotation.objects.filter(kind=AnnotationKind.GOLD, status=AnnotationStatus.ACCEPTED)
    assert gold.count() == 4 and set(gold.values_list("label__name", flat=True)) == {"spam"}
    assert MESSAGE_PROMOTED.format(count=4, s="s") in client.get(response["Location"]).content.decode()
    again = client.post(_url("gold_list", project), {"action": "promote", "count": "10"})
    assert gold.count() == 6
    assert MESSAGE_PROMOTED.format(count=2, s="s") in client.get(again["Location"]).content.decode()
    nothing = client.post(_url("gold_list", project), {"action": "promote", "count": "1"})
    assert MESSAGE_NOTHING_TO_PROMOTE in client.get(nothing["Location"]).content.decode()
    too_many = client.post(_url("gold_list", project), {"action": "promote", "count": "5000"})
    assert too_many.status_code == 400 and gold_services.ERROR_PROMOTE_COUNT in too_many.content.decode()


def test_promote_prefers_adjudication_and_skips_disagreeing_imports(project, users):
    run_import(project, _csv(["settled later", "plain", "disputed"], label="spam"))
    settled, plain, disputed = Example.objects.filter(project=project).order_by("id")
    spam, ham = Label.objects.get(project=project, name="spam"), Label.objects.get(project=project, name="ham")
    Annotation.objects.create(example=disputed, label=ham, labeler_name="second source", kind=AnnotationKind.IMPORTED)
    services.annotation_adjudicate(user=users["reviewer"], example=settled, label="ham")

    assert gold_services.gold_candidate_labels(project=project) == {settled.pk: ham.pk, plain.pk: spam.pk}
    assert gold_services.gold_promote(project=project, user=users["reviewer"], count=1, seed=3) == 1
    promoted = Annotation.objects.get(kind=AnnotationKind.GOLD)
    assert promoted.label_id == (ham.pk if promoted.example_id == settled.pk else spam.pk)
    assert promoted.example_id not in gold_services.gold_candidate_labels(project=project)


def test_promote_with_a_seed_is_repeatable(project, users):
    run_import(project, _csv([f"seeded {number}" for number in range(30)], label="spam"))
    candidates = gold_services.gold_candidate_labels(project=project)

    expected = set(random.Random(11).sample(sorted(candidates), 5))
    gold_services.gold_promote(project=project, user=users["reviewer"], count=5, seed=11)

    assert set(Annotation.objects.filter(kind=AnnotationKind.GOLD).values_list("example_id", flat=True)) == expected


# Queue


def test_queue_page_shows_progress_reasons_and_leases(client_for, users, project, annotators):
    _examples(project, 5)
    services.queue_claim_next(project=project, user=annotators[0])

    page = client_for(users["reviewer"]).get(_url("queue_overview", project)).content.decode()

    assert "<strong>0</strong> of 5 slots labeled" in page
    assert "Ready to claim</dt><dd>4<" in page and "Leased now</dt><dd>1<" in page
    assert "Exploration" in page and "random order (exploration)" in page
    assert re.search(r"in \d+\xa0minutes", _row(page, f"<strong>{annotators[0].username}</strong>"))
    assert "Queue unqueued examples" not in page


def test_queue_fill_button_reports_how_many_were_added(client_for, users, project):
    _examples(project, 3)
    QueueItem.objects.all().delete()
    client = client_for(users["admin"])
    assert "Examples not queued</dt><dd>3<" in client.get(_url("queue_overview", project)).content.decode()

    response = client.post(_url("queue_overview", project), {"action": "fill"})

    assert response.status_code == 303 and response["Location"] == _url("queue_overview", project)
    assert QueueItem.objects.filter(project=project).count() == 3
    assert MESSAGE_QUEUED.format(count=3, s="s") in client.get(response["Location"]).content.decode()
    again = client.post(_url("queue_overview", project), {"action": "fill"})
    assert MESSAGE_NOTHING_QUEUED in client.get(again["Location"]).content.decode()


def test_a_gold_question_is_not_adjudicated_and_gold_replaces_an_adjudication(client_for, users, project, labeled):
    client = client_for(users["reviewer"])
    gold_example, settled_example = labeled[GOLD_INDEX], labeled[ADJUDICATED_INDEX]

    refused = client.post(_url("adjudicate", project, example_id=gold_example.pk), {"label": "spam"})
    added = client.post(_url("gold_list", project), {"action": "add", "example_id": settled_example.pk, "label": "ham"})

    assert refused.status_code == 303
    assert ERROR_ADJUDICATE_GOLD.format(example_id=gold_example.pk) in client.get(refused["Location"]).content.decode()
    assert not Annotation.objects.filter(example=gold_example, kind=AnnotationKind.ADJUDICATED).exists()
    assert added.status_code == 303
    kinds = dict(
        Annotation.objects.filter(example=settled_example)
        .exclude(kind=AnnotationKind.HUMAN)
        .values_list("kind", "status")
    )
    assert kinds == {
        AnnotationKind.ADJUDICATED: AnnotationStatus.SUPERSEDED,
        AnnotationKind.GOLD: AnnotationStatus.ACCEPTED,
    }


def test_gold_pages_by_htmx_return_the_table_only(client_for, users, project, labeled):
    response = client_for(users["reviewer"]).get(_url("gold_list", project), headers={"HX-Request": "true"})

    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<section id="results"') and "<html" not in body
    assert f"#{labeled[GOLD_INDEX].pk}" in body
