"""The LLM page: who may open it, queuing and cancelling pre-labeling, the job poll, settings, the trust section."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from labeling import services as labeling_services
from labeling.models import Annotation, AnnotationKind, AnnotationStatus, Label
from labeling.services.llm_labels import LLMLabel
from models_app.models import PrelabelJob, PrelabelState
from models_app.project_settings import ERROR_OPENAI_NEEDS, llm_settings_get
from models_app.services.prelabel import ERROR_FILTER
from models_app.views_llm import (
    ERROR_API_KEY_ENV,
    JOB_CHANGED_EVENT,
    JOB_FINISHED_EVENT,
    MESSAGE_CANCELLED,
    MESSAGE_CANCELLING,
    MESSAGE_PRELABEL_JOINED,
    MESSAGE_PRELABEL_QUEUED,
    MESSAGE_SETTINGS_SAVED,
)

from .factories import examples_create

pytestmark = pytest.mark.django_db

WHO = ["anonymous", "outsider", "annotator", "reviewer", "admin", "global_admin"]
RANK = {"annotator": 1, "reviewer": 2, "admin": 3, "global_admin": 3}
HTMX = {"HX-Request": "true"}
SETTINGS_FORM = {
    "labeler": "causal_lm",
    "model_dir": "",
    "base_url": "",
    "model": "",
    "api_key_env": "OPENAI_API_KEY",
    "few_shot": "3",
    "calibrate": "on",
    "target_precision": "0.95",
}


def _url(name: str, project, **kwargs) -> str:
    return reverse(f"models_app:{name}", kwargs={"slug": project.slug, **kwargs})


def _expected_status(who: str, allowed_status: int = 200, minimum: str = "reviewer") -> int:
    """Anonymous users go to login, non-members get 404, members below the role the 403 page."""
    if who == "anonymous":
        return 302
    if who == "outsider":
        return 404
    return allowed_status if RANK[who] >= RANK[minimum] else 403


def _client(client_for, users, who: str):
    return client_for(None if who == "anonymous" else users[who])


def _job(project, users, state=PrelabelState.QUEUED, **extra):
    return PrelabelJob.objects.create(
        project=project, labeler="embedding", state=state, requested_by=users["reviewer"], **extra
    )


@pytest.mark.parametrize("who", WHO)
def test_role_matrix_for_the_page_and_the_prelabel_post(client_for, users, project, who):
    client = _client(client_for, users, who)
    response = client.get(_url("llm", project))
    assert response.status_code == _expected_status(who)
    if response.status_code == 403:
        assert f"needs the reviewer role in {project.name}" in response.content.decode()
    response = client.post(_url("llm_prelabel", project), {"labeler": "embedding", "limit": "20", "selection": "queue"})
    assert response.status_code == _expected_status(who, allowed_status=303)
    assert PrelabelJob.objects.filter(project=project).count() == (1 if response.status_code == 303 else 0)


@pytest.mark.parametrize("who", ["outsider", "annotator", "reviewer", "admin"])
def test_only_admins_may_save_settings(client_for, users, project, who):
    response = _client(client_for, users, who).post(_url("llm_settings", project), {**SETTINGS_FORM, "few_shot": "5"})
    assert response.status_code == _expected_status(who, allowed_status=303, minimum="admin")
    project.refresh_from_db()
    assert llm_settings_get(project).few_shot == (5 if who == "admin" else 3)


def test_the_page_shows_its_sections_and_reviewers_read_the_settings(client_for, users, project):
    html = client_for(users["reviewer"]).get(_url("llm", project)).content.decode()
    assert "Pre-label" in html and "How far to trust it" in html and "No pre-labeling yet" in html
    assert f'href="{reverse("labeling:llm_review", kwargs={"slug": project.slug})}"' in html
    assert 'name="few_shot"' not in html and "Project admins can change them." in html
    admin = client_for(users["admin"]).get(_url("llm", project)).content.decode()
    assert 'name="few_shot"' in admin and "never the key itself" in admin


def test_the_prelabel_form_queues_a_job_and_a_second_press_joins_it(client_for, users, project):
    client = client_for(users["reviewer"])
    form = {"labeler": "embedding", "limit": "50", "selection": "filter", "filter_text": " gift card "}
    response = client.post(_url("llm_prelabel", project), form, headers=HTMX)
    html = response.content.decode()
    job = PrelabelJob.objects.get(project=project)
    assert (job.labeler, job.limit, job.selection, job.filter_text, job.state) == (
        "embedding",
        50,
        "filter",
        "gift card",
        "queued",
    )
    assert job.requested_by_id == users["reviewer"].pk
    assert response.status_code == 200 and "<html" not in html and MESSAGE_PRELABEL_QUEUED in html
    assert f'hx-get="{_url("llm_job", project, job_id=job.pk)}" hx-trigger="every 1s"' in html
    assert _url("llm_cancel", project, job_id=job.pk) in html
    assert JOB_CHANGED_EVENT in response["HX-Trigger"]
    again = client.post(_url("llm_prelabel", project), form, headers=HTMX).content.decode()
    assert escape(MESSAGE_PRELABEL_JOINED) in again and PrelabelJob.objects.count() == 1


def test_prelabel_errors_show_next_to_their_field_and_queue_nothing(client_for, users, project):
    client = client_for(users["reviewer"])
    response = client.post(_url("llm_prelabel", project), {"limit": "20", "selection": "filter", "filter_text": " "})
    assert response.status_code == 400 and ERROR_FILTER in response.content.decode()
    html = client.post(
        _url("llm_prelabel", project), {"limit": "lots", "selection": "queue"}, headers=HTMX
    ).content.decode()
    assert "limit must be a whole number" in html and 'aria-invalid="true"' in html
    html = client.post(_url("llm_prelabel", project), {"limit": "0", "selection": "queue"}, headers=HTMX)
    assert "limit must be between 1 and" in html.content.decode()
    assert not PrelabelJob.objects.exists()


def test_cancel_stops_a_queued_job_at_once_and_a_running_one_after_its_chunk(client_for, users, project):
    client = client_for(users["reviewer"])
    queued = _job(project, users)
    response = client.post(_url("llm_cancel", project, job_id=queued.pk), headers=HTMX)
    queued.refresh_from_db()
    assert queued.state == PrelabelState.CANCELLED
    assert MESSAGE_CANCELLED.format(job_id=queued.pk) in response.content.decode()
    running = _job(project, users, state=PrelabelState.RUNNING, total=100, done=32)
    response = client.post(_url("llm_cancel", project, job_id=running.pk))
    assert response.status_code == 303 and response["Location"] == _url("llm", project)
    running.refresh_from_db()
    assert running.state == PrelabelState.RUNNING and running.cancel_requested
    page = client.get(response["Location"]).content.decode()
    assert MESSAGE_CANCELLING.format(job_id=running.pk) in page
    assert "Cancelling: the job stops after the chunk" in page


def test_the_job_poll_stops_with_286_once_the_job_finished(client_for, users, project, other_project):
    client = client_for(users["reviewer"])
    job = _job(project, users, state=PrelabelState.RUNNING, progress=0.4, total=50, done=20)
    url = _url("llm_job", project, job_id=job.pk)
    running = client.get(url, headers=HTMX)
    assert running.status_code == 200 and 'hx-trigger="every 1s"' in running.content.decode()
    assert "40%" in running.content.decode()
    PrelabelJob.objects.filter(pk=job.pk).update(
        state=PrelabelState.SUCCEEDED, progress=1.0, done=50, created=48, finished_at=timezone.now()
    )
    finished = client.get(url, headers=HTMX)
    html = finished.content.decode()
    assert finished.status_code == 286 and JOB_FINISHED_EVENT in finished["HX-Trigger"]
    assert "every 1s" not in html and "Review the new labels" in html
    plain = client.get(url)
    assert plain.status_code == 302 and plain["Location"] == _url("llm", project)
    assert client.get(_url("llm_job", project, job_id=999999), headers=HTMX).status_code == 404
    labeling_services.member_add(project=other_project, username=users["reviewer"].username, role="reviewer")
    assert client.get(_url("llm_job", other_project, job_id=job.pk), headers=HTMX).status_code == 404


def test_htmx_gets_the_jobs_table_alone(client_for, users, project):
    _job(project, users, state=PrelabelState.FAILED, message="<b>boom</b>")
    html = client_for(users["reviewer"]).get(_url("llm", project), headers=HTMX).content.decode()
    assert html.strip().startswith('<section id="llm-jobs"') and "Failed" in html
    assert "<b>boom</b>" not in html and "&lt;b&gt;boom&lt;/b&gt;" in html


def test_settings_are_saved_by_admins(client_for, users, project):
    form = {
        **{name: value for name, value in SETTINGS_FORM.items() if name != "calibrate"},
        "labeler": "openai",
        "base_url": "http://127.0.0.1:8080/v1",
        "model": "qwen2.5",
        "api_key_env": "LOCAL_KEY",
        "auto_accept": "on",
        "target_precision": "0.9",
    }
    client = client_for(users["admin"])
    response = client.post(_url("llm_settings", project), form)
    assert response.status_code == 303 and response["Location"] == _url("llm", project) + "#settings"
    project.refresh_from_db()
    saved = llm_settings_get(project)
    assert (saved.labeler, saved.base_url, saved.model, saved.api_key_env) == (
        "openai",
        "http://127.0.0.1:8080/v1",
        "qwen2.5",
        "LOCAL_KEY",
    )
    assert saved.auto_accept and not saved.calibrate and saved.target_precision == 0.9
    page = client.get(response["Location"]).content.decode()
    assert MESSAGE_SETTINGS_SAVED in page


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"labeler": "openai", "model": "qwen2.5"}, "base-url", ERROR_OPENAI_NEEDS),
        ({"target_precision": "1.5"}, "target", "target_precision must be between 0.5 and 0.999."),
        ({"few_shot": "many"}, "few-shot", "few_shot must be a number."),
        ({"base_url": "ftp://example.com"}, "base-url", "base_url must start with http:// or https://."),
        ({"api_key_env": "sk-live-123456"}, "api-key", ERROR_API_KEY_ENV),
    ],
)
def test_invalid_settings_are_refused_next_to_their_field_and_nothing_is_saved(
    client_for, users, project, change, field, message
):
    before = dict(project.settings or {})
    response = client_for(users["admin"]).post(_url("llm_settings", project), {**SETTINGS_FORM, **change})
    html = response.content.decode()
    assert response.status_code == 400
    assert f'<ul class="errorlist" id="{field}-errors"><li>{escape(message)}</li></ul>' in html
    assert "Nothing was saved" in html
    project.refresh_from_db()
    assert (project.settings or {}) == before
    assert "sk-live-123456" not in html  # a pasted key is never echoed back


def _trust_data(project, reviewer):
    """60 examples the LLM labeled right with high confidence and 10 it got wrong with low; people labeled all."""
    examples = examples_create(project, [f"trust text {n}" for n in range(75)])
    rows = []
    for n, example in enumerate(examples[:70]):
        right = n < 60
        confidence = 0.8 + 0.19 * n / 60 if right else 0.5 + 0.01 * (n - 60)
        rows.append(
            LLMLabel(
                example_id=example.pk,
                label="spam" if n % 2 else "ham",
                confidence=confidence,
                probabilities={"spam": confidence, "ham": 1 - confidence},
            )
        )
    for n, example in enumerate(examples[70:]):
        rows.append(LLMLabel(example_id=example.pk, label="spam", confidence=0.9 + n / 100, probabilities={}))
    labeling_services.llm_labels_store(
        project=project, labeler="smollm2", model="SmolLM2", prompt_version="causal-v1", rows=rows
    )
    labels = {label.name: label for label in Label.objects.filter(project=project)}
    Annotation.objects.bulk_create(
        Annotation(
            example=example,
            label=labels[("spam" if n % 2 else "ham") if n < 60 else ("ham" if n % 2 else "spam")],
            author=reviewer,
            kind=AnnotationKind.HUMAN,
            status=AnnotationStatus.SUBMITTED,
        )
        for n, example in enumerate(examples[:70])
    )
    labeling_services.llm_labels_store(
        project=project,
        labeler="<i>minilm</i>",
        model="MiniLM",
        prompt_version="embedding-v1",
        rows=[LLMLabel(example_id=examples[-1].pk, label="spam", confidence=0.7, probabilities={})],
    )


def test_the_trust_section_measures_each_labeler_against_people(client_for, users, project):
    _trust_data(project, users["annotator"])
    html = client_for(users["reviewer"]).get(_url("llm", project)).content.decode()
    assert "<dt>Examples with both labels</dt><dd>71</dd>" not in html  # only the labeler's own overlap counts
    assert "<dt>Examples with both labels</dt><dd>70</dd>" in html
    assert "<dt>Agreement</dt><dd>85.7%</dd>" in html
    assert "Auto-accept threshold</dt><dd>≥ 0.8</dd>" in html
    assert "Confidence ≥ 0.8 accepts 60 of 70 items" in html
    assert '<polyline class="curve-precision" points="' in html and 'class="target-line"' in html
    assert "The curve as a table" in html and "By the LLM’s label" in html
    # What auto-accept would do to the 75 pending labels: the 60 right ones and the 5 nobody labeled pass.
    assert "Of 75 pending labels from smollm2, <strong>65</strong> (86.7%) reach confidence ≥ 0.8" in html
    assert "<li>ham: 30 of 35</li><li>spam: 35 of 40</li>" in html
    assert 'Auto-accept is <span class="badge">off</span>' in html
    # A labeler without overlap says how to measure it, and its name is escaped.
    assert "No example has both a label from &lt;i&gt;minilm&lt;/i&gt;" in html and "<i>minilm</i>" not in html


def test_the_trust_section_reloads_alone_for_htmx(client_for, users, project):
    html = client_for(users["reviewer"]).get(_url("llm", project) + "?part=trust", headers=HTMX).content.decode()
    assert html.strip().startswith('<section id="llm-trust"') and "No LLM labels yet" in html
