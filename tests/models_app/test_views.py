"""The model pages: who may open them, what the list and a version show, escaping, retraining and the run poll."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from labeling.models import JobState
from models_app import views
from models_app.ml.metrics import classification_report
from models_app.models import ModelVersion, ModelVersionStatus, TrainingRun, TrainingTrigger

WHO = ["anonymous", "outsider", "annotator", "reviewer", "admin", "global_admin"]
RANK = {"annotator": 1, "reviewer": 2, "admin": 3, "global_admin": 3}
SCRIPT = "<script>alert(1)</script>"
SHA256 = "ab12cd34ef56" + "0" * 52
HTMX = {"HX-Request": "true"}


def _report(labels: list[str], true: list[int], pred: list[int], seed: int = 0) -> dict:
    """Score made-up predictions with the real metrics code, so the stored dict has exactly its keys."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(len(labels)), size=len(true))
    proba[np.arange(len(true)), pred] += 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    report = classification_report(
        [labels[i] for i in true], [labels[i] for i in pred], proba, labels, train_majority=labels[0]
    )
    return report.to_dict()


def _version(project, number: int, *, labels=("ham", "spam", "other"), random_split: bool = True, **extra):
    """Create an evaluated version with a time-split report and, optionally, a kinder random-split one."""
    labels = list(labels)
    true = [i % len(labels) for i in range(30)]
    pred = [t if i % (3 + number) else (t + 1) % len(labels) for i, t in enumerate(true)]
    metrics = _report(labels, true, pred, seed=number)
    random_metrics = {}
    if random_split:
        random_metrics = {**_report(labels, true, true, seed=number + 100), "split": {"holdout_size": 30}}
    cutoff = timezone.now() - timedelta(days=10 - number)
    fields = {
        "project": project,
        "number": number,
        "featurizer": "hashing",
        "feature_version": "hashing-v1-abc",
        "algorithm": "logreg",
        "training_counts": {
            "human": 90,
            "llm": 12,
            "synthetic": 0,
            "total": 102,
            "dropped_duplicates": 3,
            "dropped_future": 2,
            "undated": 4,
            "majority_label": labels[0],
        },
        "cutoff": cutoff,
        "holdout": {
            "size": metrics["size"],
            "cutoff": cutoff.isoformat(),
            "share": 0.2,
            "support": {name: values["support"] for name, values in metrics["per_class"].items()},
        },
        "metrics": metrics,
        "random_split_metrics": random_metrics,
        "artifact_path": f"{project.pk}/run-{number}.skops",
        "artifact_sha256": SHA256,
        "status": ModelVersionStatus.EVALUATED,
        "trained_at": timezone.now() - timedelta(hours=10 - number),
        **extra,
    }
    return ModelVersion.objects.create(**fields)


def _url(name: str, project, **kwargs) -> str:
    return reverse(f"models_app:{name}", kwargs={"slug": project.slug, **kwargs})


def _client(client_for, users, who: str):
    return client_for(None if who == "anonymous" else users[who])


def _expected_status(who: str, allowed_status: int = 200) -> int:
    """Anonymous users go to login, non-members get 404, annotators the 403 page."""
    if who == "anonymous":
        return 302
    if who == "outsider":
        return 404
    return allowed_status if RANK[who] >= RANK["reviewer"] else 403


@pytest.fixture
def version(project):
    return _version(project, 1)


@pytest.fixture
def queued_run(project, users):
    return TrainingRun.objects.create(project=project, trigger=TrainingTrigger.BUTTON, requested_by=users["reviewer"])


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("name", ["model_list", "model_detail", "training_run"])
def test_role_matrix_for_model_pages(client_for, users, project, version, queued_run, name, who):
    kwargs = {"model_detail": {"number": version.number}, "training_run": {"run_id": queued_run.pk}}.get(name, {})

    response = _client(client_for, users, who).get(_url(name, project, **kwargs))

    assert response.status_code == _expected_status(who)
    if who == "anonymous":
        assert response["Location"].startswith(reverse("login") + "?next=")
    if response.status_code == 403:
        assert f"needs the reviewer role in {project.name}" in response.content.decode()


@pytest.mark.parametrize("who", WHO)
def test_role_matrix_for_the_retrain_post(client_for, users, project, who):
    response = _client(client_for, users, who).post(_url("model_retrain", project))

    assert response.status_code == _expected_status(who, allowed_status=303)
    allowed = response.status_code == 303
    assert TrainingRun.objects.filter(project=project).count() == (1 if allowed else 0)
    if allowed:
        assert response["Location"] == _url("model_list", project)


def test_the_nav_links_to_models_for_reviewers_only(client_for, users, project):
    overview = reverse("labeling:project_overview", kwargs={"slug": project.slug})
    models_link = f'href="{_url("model_list", project)}"'

    assert models_link in client_for(users["reviewer"]).get(overview).content.decode()
    assert models_link not in client_for(users["annotator"]).get(overview).content.decode()


def test_the_list_shows_versions_newest_first_with_their_scores(client_for, users, project):
    versions = [_version(project, number) for number in (1, 2, 3)]
    unsplit = _version(project, 4, random_split=False, status=ModelVersionStatus.PUBLISHED)

    response = client_for(users["reviewer"]).get(_url("model_list", project))

    html = response.content.decode()
    assert response.status_code == 200
    positions = [html.index(f">v{number}</a>") for number in (4, 3, 2, 1)]
    assert positions == sorted(positions)
    for version in versions:
        assert f"{version.metrics['macro_f1']:.3f}" in html
        assert f"{version.metrics['accuracy']:.3f}" in html
        assert f"random split would say {version.random_split_metrics['macro_f1']:.3f}" in html
    assert f"{versions[0].metrics['majority_baseline']['macro_f1']:.3f}" in html
    assert html.count("random split would say") == 3, "a version without a random split shows no comparison"
    assert 'class="badge status-published"' in html
    assert f"{unsplit.holdout['size']} labels" in html
    assert "No model yet" not in html


def test_the_list_without_versions_says_what_is_needed(client_for, users, project):
    html = client_for(users["reviewer"]).get(_url("model_list", project)).content.decode()

    assert "No model yet" in html
    assert "This project has 0 human labels so far." in html
    assert "newest 20%" in html, "the evaluation note names the holdout share"
    assert "After every 50 new human labels" in html


def test_htmx_gets_only_the_versions_table(client_for, users, project, version):
    response = client_for(users["reviewer"]).get(_url("model_list", project), headers=HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="results"')
    assert "<html" not in html
    assert 'hx-trigger="training-run-finished from:body"' in html


def test_the_detail_shows_per_class_rows_and_the_confusion_matrix(client_for, users, project):
    version = _version(project, 2, labels=("ham", "spam", "other", "unsure"))
    metrics = version.metrics

    response = client_for(users["reviewer"]).get(_url("model_detail", project, number=version.number))

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="class-row"') == 4
    assert len(re.findall(r'class="num cm-cell[^"]*"', html)) == 16
    assert len(re.findall(r'class="num cm-cell is-correct"', html)) == 4
    assert '<th scope="row">spam</th>' in html
    assert f"{metrics['per_class']['spam']['f1']:.3f}" in html
    assert f"{metrics['ece']:.3f}" in html
    diagonal = metrics["confusion"][0][0]
    share = round(diagonal / sum(metrics["confusion"][0]), 3)
    assert f'style="--share: {share}"' in html
    assert f">{diagonal}</td>" in html
    assert f'title="{SHA256}">{SHA256[: views.SHA256_SHOWN]}…</code>' in html
    assert "Time split and random split" in html and "Difference" in html


def test_an_unknown_version_is_404(client_for, users, project, version):
    response = client_for(users["reviewer"]).get(_url("model_detail", project, number=99))

    assert response.status_code == 404


def test_label_names_and_reasons_are_escaped(client_for, users, project):
    version = _version(project, 1, labels=(SCRIPT, "ham"), status_reason=f"Rejected: {SCRIPT}")
    client = client_for(users["reviewer"])

    pages = [
        client.get(_url("model_detail", project, number=version.number)).content.decode(),
        client.get(_url("model_list", project)).content.decode(),
    ]

    for html in pages:
        assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]


def test_retrain_queues_one_run_and_a_second_press_joins_it(client_for, users, project):
    client = client_for(users["reviewer"])

    first = client.post(_url("model_retrain", project), follow=True)
    second = client.post(_url("model_retrain", project), follow=True)

    runs = list(TrainingRun.objects.filter(project=project))
    assert len(runs) == 1
    assert runs[0].state == JobState.QUEUED
    assert runs[0].trigger == TrainingTrigger.BUTTON
    assert runs[0].requested_by_id == users["reviewer"].pk
    assert views.MESSAGE_RUN_QUEUED in first.content.decode()
    assert views.MESSAGE_RUN_WAITING in second.content.decode()


def test_retrain_by_htmx_returns_the_polling_run_partial(client_for, users, project):
    response = client_for(users["reviewer"]).post(_url("model_retrain", project), headers=HTMX)

    html = response.content.decode()
    run = TrainingRun.objects.get(project=project)
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="run-slot">')
    assert views.MESSAGE_RUN_QUEUED in html
    assert f'hx-get="{_url("training_run", project, run_id=run.pk)}" hx-trigger="every 1s"' in html
    assert 'role="progressbar"' in html and 'aria-valuenow="0"' in html


def test_retrain_while_a_run_trains_asks_for_a_follow_up(client_for, users, project, queued_run):
    TrainingRun.objects.filter(pk=queued_run.pk).update(state=JobState.RUNNING, started_at=timezone.now())

    response = client_for(users["admin"]).post(_url("model_retrain", project), headers=HTMX)

    assert TrainingRun.objects.filter(project=project).count() == 1
    assert TrainingRun.objects.get(pk=queued_run.pk).follow_up is True
    assert views.MESSAGE_RUN_FOLLOW_UP in response.content.decode()


def test_a_get_to_the_retrain_url_is_405(client_for, users, project):
    response = client_for(users["reviewer"]).get(_url("model_retrain", project))

    assert response.status_code == 405
    assert not TrainingRun.objects.filter(project=project).exists()


def test_the_run_partial_polls_while_active_and_stops_with_286_when_finished(client_for, users, project, queued_run):
    client = client_for(users["reviewer"])
    url = _url("training_run", project, run_id=queued_run.pk)
    TrainingRun.objects.filter(pk=queued_run.pk).update(state=JobState.RUNNING, progress=0.42, message="Training…")

    running = client.get(url, headers=HTMX)
    version = _version(project, 1, training_run=queued_run)
    TrainingRun.objects.filter(pk=queued_run.pk).update(
        state=JobState.SUCCEEDED, progress=1.0, model_version=version, finished_at=timezone.now()
    )
    finished = client.get(url, headers=HTMX)

    assert running.status_code == 200
    assert 'hx-trigger="every 1s"' in running.content.decode()
    assert 'aria-valuenow="42"' in running.content.decode()
    assert "HX-Trigger" not in running.headers
    assert finished.status_code == 286
    finished_html = finished.content.decode()
    assert "hx-trigger" not in finished_html
    assert 'aria-valuenow="100"' in finished_html
    assert f'href="{_url("model_detail", project, number=1)}"' in finished_html
    assert views.RUN_FINISHED_EVENT in finished.headers["HX-Trigger"]


def test_the_run_page_without_htmx_is_a_whole_page(client_for, users, project, queued_run):
    response = client_for(users["reviewer"]).get(_url("training_run", project, run_id=queued_run.pk))

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html and 'id="training-run"' in html
    assert 'aria-current="page">Models</a>' in html


def test_a_run_of_another_project_is_404(client_for, users, project, other_project):
    from labeling import services

    services.member_add(project=other_project, username=users["reviewer"].username, role="reviewer")
    foreign = TrainingRun.objects.create(project=other_project, trigger=TrainingTrigger.API)

    response = client_for(users["reviewer"]).get(_url("training_run", project, run_id=foreign.pk))

    assert response.status_code == 404


def test_the_list_shows_the_latest_run(client_for, users, project, queued_run):
    html = client_for(users["reviewer"]).get(_url("model_list", project)).content.decode()

    assert 'id="training-run"' in html
    assert f'hx-get="{_url("training_run", project, run_id=queued_run.pk)}"' in html
