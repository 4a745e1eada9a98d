"""The flywheel dashboard: its numbers on known data, who may open it, escaping, the next steps on the project
home, and a query count that does not grow with the project (the steps themselves: test_next_steps.py)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from flywheel.dashboard import (
    TOP_ANNOTATORS,
    annotator_throughput,
    dashboard_get,
    label_series,
    llm_agreement,
    model_history,
    prediction_series,
    queue_history,
    queue_now,
    window_get,
)
from labeling import services
from labeling.models import (
    AnnotationKind,
    AnnotationStatus,
    JobState,
    QueueReason,
    QueueState,
)
from labeling.services.llm_labels import LLMLabel
from models_app.models import (
    GateDecision,
    ModelVersionStatus,
    PredictionLog,
    QueueBuild,
    QueueBuildTrigger,
)
from tests.flywheel.factories import busy_project, label_add, queue_items_add, version_add
from tests.models_app.factories import examples_create

SCRIPT = "<script>alert(1)</script>"
NOW = datetime(2024, 3, 10, 15, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


def _dashboard_url(project, days: int | None = None) -> str:
    url = reverse("flywheel:dashboard", kwargs={"slug": project.slug})
    return f"{url}?days={days}" if days else url


def _labels(project):
    return {label.name: label for label in project.labels.all()}


# Selectors


def test_window_is_whole_local_days_ending_today():
    with timezone.override(NEW_YORK):
        window = window_get(days=7, now=NOW)
    assert len(window.days) == 7
    assert window.days[-1].isoformat() == "2024-03-10"
    assert window.start == datetime(2024, 3, 4, tzinfo=NEW_YORK)


def test_label_series_counts_each_provenance_per_local_day(users, project):
    spam, ham = _labels(project).values()
    examples = examples_create(project, [f"text {n}" for n in range(12)])
    reviewer = users["reviewer"]
    annotator = users["annotator"]
    # 03:00 UTC on the 10th is 22:00 on the 9th in New York: the day is the local one.
    label_add(examples[0], spam, author=annotator, at=datetime(2024, 3, 10, 3, tzinfo=UTC))
    label_add(examples[1], spam, author=annotator, at=datetime(2024, 3, 10, 14, tzinfo=UTC))
    label_add(examples[2], spam, author=annotator, status=AnnotationStatus.WITHDRAWN, at=NOW)
    label_add(examples[3], ham, kind=AnnotationKind.IMPORTED, at=datetime(2024, 3, 8, 12, tzinfo=UTC))
    label_add(examples[4], ham, kind=AnnotationKind.GOLD, status=AnnotationStatus.ACCEPTED, author=reviewer, at=NOW)
    label_add(
        examples[5], ham, kind=AnnotationKind.ADJUDICATED, status=AnnotationStatus.ACCEPTED, author=reviewer, at=NOW
    )
    llm = {"kind": AnnotationKind.LLM, "labeler": "smollm2", "at": NOW}
    label_add(examples[6], spam, status=AnnotationStatus.ACCEPTED, auto_accepted=True, **llm)
    label_add(examples[7], spam, status=AnnotationStatus.ACCEPTED, reviewed_by=reviewer, **llm)
    label_add(examples[8], spam, status=AnnotationStatus.PENDING, **llm)
    label_add(examples[9], spam, status=AnnotationStatus.REJECTED, **llm)
    label_add(examples[10], spam, author=reviewer, at=datetime(2024, 1, 1, tzinfo=UTC))  # before the window

    with timezone.override(NEW_YORK):
        window = window_get(days=30, now=NOW)
        series = label_series(project=project, window=window)
    index = {day.isoformat(): position for position, day in enumerate(window.days)}
    today, yesterday, two_days_ago = index["2024-03-10"], index["2024-03-09"], index["2024-03-08"]
    assert series["human"][yesterday] == 1
    assert series["human"][today] == 1
    assert sum(series["human"]) == 2  # the withdrawn one and the one before the window do not count
    assert series["imported"][two_days_ago] == 1
    assert series["gold"][today] == series["adjudicated"][today] == 1
    assert series["llm_auto"][today] == series["llm_reviewed"][today] == series["llm_pending"][today] == 1
    assert sum(sum(values) for values in series.values()) == 8


def test_queue_now_counts_ready_by_reason_and_the_other_states(users, project):
    examples = examples_create(project, [f"queued {n}" for n in range(10)])
    queue_items_add(project, examples[:4], QueueReason.UNCERTAIN)
    queue_items_add(project, examples[4:5], QueueReason.EXPLORATION)
    queue_items_add(project, examples[5:7], QueueReason.UNCERTAIN, QueueState.LEASED, owner=users["annotator"])
    queue_items_add(project, examples[7:10], QueueReason.FEEDBACK, QueueState.DONE, owner=users["reviewer"])

    queue = queue_now(project=project)

    assert queue["by_reason"] == [
        {"reason": "uncertain", "label": "Uncertain", "count": 4},
        {"reason": "exploration", "label": "Exploration", "count": 1},
    ]
    assert (queue["ready"], queue["leased"], queue["done"]) == (5, 2, 3)


def test_queue_history_reads_ready_by_reason_after_each_successful_build(project):
    now = timezone.now()
    builds = [
        (JobState.SUCCEEDED, 2, now - timedelta(days=2), {"ready_by_reason": {"uncertain": 7, "exploration": 3}}),
        (JobState.SUCCEEDED, None, now - timedelta(days=1), {"ready_by_reason": {"exploration": 12}}),
        (JobState.SUCCEEDED, None, now, {"picked": {}}),  # an empty pool: nothing was written
        (JobState.FAILED, None, now, {"ready_by_reason": {"x": 1}}),
        (JobState.SUCCEEDED, None, now - timedelta(days=90), {"ready_by_reason": {"uncertain": 99}}),  # too old
    ]
    for state, model_number, finished_at, composition in builds:
        QueueBuild.objects.create(
            project=project,
            trigger=QueueBuildTrigger.MODEL,
            state=state,
            progress=1.0,
            model_number=model_number,
            finished_at=finished_at,
            composition=composition,
        )

    history = queue_history(project=project, window=window_get(days=30))

    assert [reason["reason"] for reason in history["reasons"]] == ["exploration", "uncertain"]
    assert [(build["model"], build["counts"]) for build in history["builds"]] == [
        ("v2", [3, 7]),
        ("no model", [12, 0]),
    ]


def test_model_history_has_scores_and_the_latest_gate_verdict(project):
    version_add(project, 1, status=ModelVersionStatus.RETIRED, macro_f1=0.61, accuracy=0.7, gate=True)
    version_add(
        project, 2, status=ModelVersionStatus.REJECTED, macro_f1=0.55, gate=False, reason="Recall of spam dropped."
    )
    third = version_add(project, 3, status=ModelVersionStatus.PUBLISHED, macro_f1=0.72, holdout_size=55, gate=False)
    GateDecision.objects.create(
        project=project,
        model_version=third,
        passed=True,
        reasons=["Passed on a second look."],
        overridden_at=timezone.now(),
        override_reason="Checked by hand.",
    )  # v3's newest decision wins
    version_add(project, 4, status=ModelVersionStatus.TRAINING, macro_f1=None)

    history = model_history(project=project)

    assert [row["label"] for row in history] == ["v1", "v2", "v3", "v4"]
    v1, v2, v3, v4 = history
    assert (v1["macro_f1"], v1["accuracy"], v1["gate"], v1["published"]) == (0.61, 0.7, "passed", False)
    assert (v2["gate"], v2["gate_reason"], v2["status"]) == ("failed", "Recall of spam dropped.", "rejected")
    assert (v3["gate"], v3["overridden"], v3["published"], v3["holdout_size"]) == ("passed", True, True, 55)
    assert v3["gate_reason"] == "Passed on a second look."
    assert (v4["macro_f1"], v4["gate"], v4["status_label"]) == (None, "none", "Training")


def test_llm_agreement_tells_accepted_from_corrected_rejected_and_auto(users, project):
    examples = examples_create(project, [f"llm text {n}" for n in range(5)])
    reviewer = users["reviewer"]
    services.llm_labels_store(
        project=project,
        labeler="smollm2",
        model="SmolLM2",
        prompt_version="v1",
        rows=[
            LLMLabel(example_id=example.pk, label="spam", confidence=confidence, probabilities={"spam": confidence})
            for example, confidence in zip(examples, (0.99, 0.6, 0.6, 0.6, 0.6), strict=True)
        ],
        auto_accept_at=0.95,
    )
    ids = {example.pk: example.annotations.get(kind=AnnotationKind.LLM).pk for example in examples}
    services.llm_labels_review(project=project, user=reviewer, ids=[ids[examples[1].pk]], action="accept")
    services.llm_labels_review(project=project, user=reviewer, ids=[ids[examples[2].pk]], action="reject")
    services.llm_label_correct(project=project, user=reviewer, annotation_id=ids[examples[3].pk], label="ham")

    series = llm_agreement(project=project, window=window_get(days=7))

    today = {key: series[key][-1] for key in ("accepted", "corrected", "rejected", "auto", "share")}
    assert today == {"accepted": 1, "corrected": 1, "rejected": 1, "auto": 1, "share": 33.3}
    assert series["share"][:-1] == [None] * 6


def test_annotator_throughput_keeps_the_busiest_and_sums_the_rest(make_user, project):
    spam = _labels(project)["spam"]
    people = [make_user(f"person-{n:02d}") for n in range(TOP_ANNOTATORS + 2)]
    examples = examples_create(project, [f"throughput {n}" for n in range(30)])
    now = timezone.now()
    # person-00 labels 12 examples, person-n (n >= 1) labels 10 - n: the busiest come first.
    for example in examples[:12]:
        label_add(example, spam, author=people[0], at=now - timedelta(minutes=5), seconds_spent=6.0)
    for n, person in enumerate(people[1:], start=1):
        for example in examples[: 10 - n]:
            label_add(example, spam, author=person, at=now - timedelta(days=1))
    label_add(examples[20], spam, author=people[1], at=now - timedelta(days=20))  # outside the last 7 days

    throughput = annotator_throughput(project=project, window=window_get(days=30))

    names = [entry["name"] for entry in throughput["annotators"]]
    assert names == [f"person-{n:02d}" for n in range(TOP_ANNOTATORS)] + ["Others"]
    assert sum(throughput["series"]["others"]) == 2 + 1  # person-08 and person-09
    assert sum(throughput["series"][str(people[0].pk)]) == 12
    top = throughput["pace"][0]
    assert top == {"name": "person-00", "labels": 12, "hours": 1, "per_hour": 12.0, "mean_seconds": 6.0}
    assert next(row for row in throughput["pace"] if row["name"] == "person-01")["labels"] == 9


def test_prediction_series_sums_each_day(project):
    version = version_add(project, 1, status=ModelVersionStatus.PUBLISHED)
    now = timezone.now()
    log = {"project": project, "model_version": version, "model_number": 1}
    PredictionLog.objects.create(**log, count=10, abstained=1, low_confidence=3, duration_ms=10.0, created_at=now)
    PredictionLog.objects.create(**log, count=5, abstained=0, low_confidence=1, duration_ms=20.0, created_at=now)
    PredictionLog.objects.create(**log, count=7, created_at=now - timedelta(days=1))
    PredictionLog.objects.create(**log, count=100, created_at=now - timedelta(days=40))

    series = prediction_series(project=project, window=window_get(days=30))

    assert (series["served"][-1], series["abstained"][-1], series["low_confidence"][-1]) == (15, 1, 4)
    assert (series["calls"][-1], series["mean_ms"][-1]) == (2, 15.0)
    assert series["served"][-2] == 7
    assert sum(series["served"]) == 22


def test_dashboard_tiles_and_tables(users, project):
    busy_project(project, [users["annotator"], users["reviewer"]], users["reviewer"])

    board = dashboard_get(project=project)

    assert board.tiles["labels_total"] == 30 + 1 + 1 + 5  # human, imported, gold, accepted LLM labels
    assert board.tiles["queue_ready"] == 14
    assert board.tiles["published"] == {"number": 3, "macro_f1": 0.63}
    assert board.tiles["predictions_today"] == 20
    assert board.tables["labels"][0]["day"] == timezone.localdate()
    assert [row["share"] for row in board.tables["llm"]] and all(row["total"] for row in board.tables["llm"])
    json.dumps(board.charts)  # what json_script sends must be plain JSON


# The page


WHO = ["anonymous", "outsider", "annotator", "reviewer", "admin", "global_admin"]


@pytest.mark.parametrize("who", WHO)
def test_who_may_open_the_dashboard(client_for, users, project, who):
    response = client_for(None if who == "anonymous" else users[who]).get(_dashboard_url(project))

    expected = {"anonymous": 302, "outsider": 404, "annotator": 403}.get(who, 200)
    assert response.status_code == expected
    if who == "anonymous":
        assert response["Location"].startswith(reverse("login"))
    if who == "annotator":
        assert "needs the reviewer role" in response.content.decode()
    if expected == 200:
        assert b"What to do next" in response.content


def test_dashboard_link_is_in_the_subnav_for_reviewers_only(client_for, users, project):
    url = _dashboard_url(project)
    overview = reverse("labeling:project_overview", kwargs={"slug": project.slug})

    assert f'href="{url}"'.encode() in client_for(users["reviewer"]).get(overview).content
    assert f'href="{url}"'.encode() not in client_for(users["annotator"]).get(overview).content
    page = client_for(users["admin"]).get(url).content.decode()
    assert f'<a href="{url}" aria-current="page">Dashboard</a>' in page


def test_an_empty_project_shows_every_empty_state_and_no_canvas(client_for, users, project):
    page = client_for(users["reviewer"]).get(_dashboard_url(project)).content.decode()

    assert "<canvas" not in page
    empty_states = (
        "No labels in the last 30 days",
        "Nothing is ready in the queue",
        "No model yet",
        "No LLM labels reviewed",
        "No human labels in the last",
        "No predictions served",
    )
    for empty in empty_states:
        assert empty in page


def test_a_busy_project_draws_every_chart_with_a_table(client_for, users, project):
    busy_project(project, [users["annotator"], users["reviewer"]], users["reviewer"])

    page = client_for(users["reviewer"]).get(_dashboard_url(project, days=7)).content.decode()

    for canvas in ("labels", "queue", "queue-history", "models", "llm", "annotators", "predictions"):
        assert f'id="chart-{canvas}"' in page
    assert page.count('<details class="chart-table">') == 7
    assert 'id="dashboard-data"' in page
    assert "vendor/chart-4.6.1.umd.min.js" in page
    assert 'aria-current="page">7 days</a>' in page
    data = json.loads(re.search(r'id="dashboard-data" type="application/json">(.*?)</script>', page).group(1))
    assert len(data["days"]) == 7
    assert [version["label"] for version in data["models"]] == ["v1", "v2", "v3"]


def test_an_unknown_period_falls_back_to_30_days(client_for, users, project):
    response = client_for(users["reviewer"]).get(_dashboard_url(project) + "?days=100000")

    assert response.context["days"] == 30
    assert len(response.context["charts"]["days"]) == 30


def test_text_from_data_is_escaped_in_the_page_and_the_json(client_for, make_user, users, project):
    member = make_user(SCRIPT)
    services.member_add(project=project, username=member.username, role="annotator")
    spam = _labels(project)["spam"]
    for example in examples_create(project, ["a", "b"]):
        label_add(example, spam, author=member, seconds_spent=3.0)
    version_add(project, 1, status=ModelVersionStatus.REJECTED, gate=False, reason=f"Reason {SCRIPT}")

    page = client_for(users["reviewer"]).get(_dashboard_url(project)).content.decode()

    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the tables and the next step
    assert "\\u003Cscript\\u003Ealert(1)\\u003C/script\\u003E" in page  # json_script
    data = json.loads(re.search(r'id="dashboard-data" type="application/json">(.*?)</script>', page).group(1))
    assert data["annotators"]["annotators"][0]["name"] == SCRIPT


def _count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as context:
        assert client.get(url).status_code == 200
    return len(context.captured_queries)


def test_the_dashboard_takes_a_bounded_number_of_queries(
    client_for, make_user, users, project, django_assert_max_num_queries
):
    busy_project(project, [users["annotator"]], users["reviewer"], versions=2)
    client = client_for(users["reviewer"])
    url = _dashboard_url(project)
    client.get(url)  # warm the session and the per-user caches
    small = _count_queries(client, url)

    more_people = [make_user(f"extra-{n}") for n in range(12)]
    spam = _labels(project)["spam"]
    for n, example in enumerate(examples_create(project, [f"more {n}" for n in range(24)])):
        label_add(example, spam, author=more_people[n % 12], seconds_spent=2.0)
    for number in range(3, 13):
        version_add(project, number, status=ModelVersionStatus.REJECTED, gate=False)

    assert _count_queries(client, url) == small
    with django_assert_max_num_queries(35):
        client.get(url)


def test_the_project_home_shows_what_to_do_next(client_for, users, project):
    examples = examples_create(project, ["a", "b"])
    queue_items_add(project, examples, QueueReason.EXPLORATION)
    spam = _labels(project)["spam"]
    label_add(examples[0], spam, kind=AnnotationKind.LLM, status=AnnotationStatus.PENDING, labeler="smollm2")
    overview = reverse("labeling:project_overview", kwargs={"slug": project.slug})

    reviewer = client_for(users["reviewer"]).get(overview).content.decode()
    annotator = client_for(users["annotator"]).get(overview).content.decode()

    assert "What to do next" in reviewer and "What to do next" in annotator
    assert "Review 1 LLM label" in reviewer
    assert reverse("labeling:llm_review", kwargs={"slug": project.slug}) in reviewer
    assert "Label the next items: 2 items ready" in annotator
    assert "Review 1 LLM label" not in annotator
