"""The gate and publishing on the model pages: what each role sees, overriding with a reason, rolling back."""

from __future__ import annotations

import pytest
from django.urls import reverse

from models_app.models import Deployment, DeploymentAction, DeploymentEvent, GateDecision

from .factories import labeled_project, shuffle_training_labels, train_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(project, users):
    """v1 passes and serves; v2, trained on shuffled labels, is rejected."""
    examples = labeled_project(project, users["annotator"], count=200)
    train_version(project)
    shuffle_training_labels(project, examples)
    train_version(project)


def test_the_model_page_shows_the_gate_checks_and_both_models_scores(project, users, client_for, two_versions):
    page = client_for(users["reviewer"]).get(reverse("models_app:model_detail", args=[project.slug, 2]))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'Gate: <span class="gate-verdict is-fail">failed</span>' in html
    assert "against the published v1" in html
    for title in ("Holdout size", "Macro-F1", "Recall per label", "Business rules on top"):
        assert title in html
    assert "v1 (published)" in html
    # Reviewers see no publish form.
    assert "model_publish" not in html and "Publish v2 over the gate" not in html

    served = client_for(users["reviewer"]).get(reverse("models_app:model_detail", args=[project.slug, 1]))
    assert "v1 serves predictions now" in served.content.decode()
    listing = client_for(users["reviewer"]).get(reverse("models_app:model_list", args=[project.slug]))
    assert "answers predictions" in listing.content.decode()


def test_an_admin_overrides_the_gate_with_a_reason_and_rolls_back(project, users, client_for, two_versions):
    admin = client_for(users["admin"])
    url = reverse("models_app:model_publish", args=[project.slug, 2])
    page = admin.get(reverse("models_app:model_detail", args=[project.slug, 2])).content.decode()
    assert "Publish v2 over the gate" in page and 'name="reason"' in page

    refused = admin.post(url, {"reason": ""}, follow=True)
    assert "needs a written reason" in refused.content.decode()
    assert Deployment.objects.get(project=project).model_version.number == 1

    done = admin.post(url, {"reason": "Needed for the <b>launch</b>"}, follow=True)
    html = done.content.decode()
    assert "Model v2 now serves predictions" in html
    assert "Needed for the &lt;b&gt;launch&lt;/b&gt;" in html  # the reason is shown, escaped
    assert Deployment.objects.get(project=project).model_version.number == 2
    assert GateDecision.objects.get(model_version__number=2).override_reason == "Needed for the <b>launch</b>"

    back_page = admin.get(reverse("models_app:model_detail", args=[project.slug, 1])).content.decode()
    assert "Roll back to v1" in back_page
    admin.post(reverse("models_app:model_publish", args=[project.slug, 1]))
    assert Deployment.objects.get(project=project).model_version.number == 1
    assert DeploymentEvent.objects.filter(project=project).first().action == DeploymentAction.ROLLBACK


def test_only_admins_may_publish(project, users, client_for, two_versions):
    url = reverse("models_app:model_publish", args=[project.slug, 2])
    assert client_for(users["reviewer"]).post(url, {"reason": "x"}).status_code == 403
    assert client_for(users["outsider"]).post(url, {"reason": "x"}).status_code == 404
    assert client_for(users["admin"]).get(url).status_code == 405
    assert Deployment.objects.get(project=project).model_version.number == 1


def test_an_admin_sets_the_gate_and_feedback_settings_on_the_models_page(project, users, client_for):
    from models_app.project_settings import serving_settings_get

    url = reverse("models_app:serving_settings", args=[project.slug])
    page = client_for(users["admin"]).get(reverse("models_app:model_list", args=[project.slug])).content.decode()
    assert 'name="feedback_threshold"' in page and 'value="0.6"' in page
    reviewer_page = client_for(users["reviewer"]).get(reverse("models_app:model_list", args=[project.slug]))
    assert 'name="feedback_threshold"' not in reviewer_page.content.decode()
    assert client_for(users["reviewer"]).post(url, {"feedback_threshold": "0.5"}).status_code == 403

    form = {
        "auto_publish": "on",
        "gate_tolerance": "0.01",
        "gate_recall_drop": "0.1",
        "gate_min_holdout": "50",
        "feedback_threshold": "0.7",
        "feedback_per_day": "200",
    }
    done = client_for(users["admin"]).post(url, form, follow=True)
    assert "Gate and feedback settings saved" in done.content.decode()
    project.refresh_from_db()
    saved = serving_settings_get(project)
    assert (saved.auto_publish, saved.feedback, saved.gate_min_holdout, saved.feedback_threshold) == (
        True,
        False,  # an unticked box
        50,
        0.7,
    )
    refused = client_for(users["admin"]).post(url, {**form, "feedback_threshold": "2"}, follow=True)
    assert "feedback_threshold must be between" in refused.content.decode()
    project.refresh_from_db()
    assert serving_settings_get(project).feedback_threshold == 0.7
