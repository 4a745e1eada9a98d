"""An admin writes a keyword rule in the structured editor, watches the live preview, saves and publishes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from models_app import services
from models_app.models import Deployment, ModelVersion, RuleSet, TrainingTrigger
from models_app.services.predict import _rules_cache as serving_rules_cache
from tests.conftest import PASSWORD
from tests.models_app.factories import labeled_project


@pytest.fixture
def published(project, users, settings, tmp_path):
    """A project whose first model trained on 200 labels, passed the gate and serves."""
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    settings.FEATURE_DIR = tmp_path / "features"
    services.model_cache_clear()
    serving_rules_cache.clear()
    labeled_project(project, users["annotator"], count=200)
    run = services.training_run_request(project=project, trigger=TrainingTrigger.BUTTON)
    run = services.training_run_execute(run_id=run.pk)
    assert run.state == "succeeded", run.message
    yield ModelVersion.objects.get(pk=run.model_version_id)
    # Serving caches compiled rule sets by id, and ids come back once the test's tables are flushed.
    serving_rules_cache.clear()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin_adds_a_keyword_force_rule_previews_saves_and_publishes_it(
    live_server, page, log_in, users, project, published
):
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    artifacts = Path(settings.DATA_DIR) / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)

    log_in(page, "project-admin", PASSWORD)
    page.goto(f"{live_server.url}/p/{project.slug}/")
    page.get_by_role("navigation", name=project.name).get_by_role("link", name="Rules").click()
    expect(page.get_by_role("heading", name="Business rules")).to_be_visible()
    expect(page.locator("#live-rules-version")).to_contain_text("No rules are live")
    preview = page.locator("#rules-preview")
    changed = preview.locator('[data-stat="changed"]')
    expect(changed).to_have_text("0")  # the preview of the (empty) live rules, loaded by htmx
    expect(preview).to_contain_text("model v1")
    page.evaluate("window.stillTheSamePage = true")

    page.get_by_role("button", name="Add rule").click()
    rule = page.locator("#rule-list > .rule").first
    expect(rule.locator(".rule-position")).to_have_text("1")
    rule.get_by_label("Rule name").fill("Chorus is spam")
    rule.get_by_label("Then").select_option("force")
    rule.get_by_label("Label", exact=True).select_option("spam")

    # An invalid pattern: the engine's message shows next to the rule, and goes away once fixed.
    rule.get_by_label("When").select_option("regex")
    expect(rule.get_by_label("Words or phrases")).to_be_hidden()
    rule.get_by_label("Pattern").fill("(chorus")
    expect(rule.locator(".rule-error")).to_contain_text("Rule 1 ('Chorus is spam'): condition 1: pattern")
    rule.get_by_label("When").select_option("keywords_any")
    rule.get_by_label("Words or phrases").fill("chorus")
    expect(rule.locator(".rule-error")).to_be_empty()

    expect(changed).not_to_have_text("0")
    count = int(changed.inner_text())
    assert count > 0
    expect(preview.locator(".firings")).to_contain_text("Chorus is spam")
    expect(preview.locator(".rules-samples tbody tr")).to_have_count(count)
    expect(preview).to_contain_text("Publishing them needs a reason")
    assert page.evaluate("window.stillTheSamePage") is True  # every preview was an htmx swap

    page.get_by_label("Note").fill("Chorus comments are spam now")
    page.get_by_role("button", name="Save and publish").click()
    expect(page.get_by_label("Reason to publish")).to_have_attribute("aria-invalid", "true")
    assert not RuleSet.objects.exists()  # the page asked for a reason instead of posting
    page.get_by_label("Reason to publish").fill("The label policy changed")
    page.get_by_role("button", name="Save and publish").click()

    expect(page.get_by_role("status").filter(has_text="Saved rules v1 and put them live")).to_be_visible()
    live = page.locator("#live-rules-version")
    expect(live).to_contain_text("v1")
    expect(live).to_contain_text("live")
    expect(page.locator(".rule-list")).to_contain_text("Chorus is spam")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.get_by_role("button", name="Save as v2")).to_be_visible()
    # The editor starts from the live rules.
    expect(page.locator("#rule-list > .rule").first.get_by_label("Words or phrases")).to_have_value("chorus")
    expect(changed).to_have_text(str(count))
    deployment = Deployment.objects.get(project=project)
    assert (deployment.rule_set.number, deployment.model_version_id) == (1, published.pk)
    assert services.predict(project=project, texts=["love the chorus"], metas=None).predictions[0]["label"] == "spam"

    page.screenshot(path=str(artifacts / "rules-1280.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 740})
    page.screenshot(path=str(artifacts / "rules-360.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert re.search(r"/p/reviews/rules/$", page.url)
    assert errors == []
