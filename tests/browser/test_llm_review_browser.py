"""A reviewer accepts two LLM labels on the review desk with the keyboard only; the page never runs the text."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling import services
from labeling.models import Annotation, AnnotationKind
from labeling.services.llm_labels import LLMLabel
from tests.conftest import PASSWORD
from tests.models_app.factories import examples_create

PAYLOAD = "<script>window.__pwned=1</script>free gift cards"
TEXTS = [PAYLOAD, "Subscribe to my channel", "Love the chorus"]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_reviewer_selects_two_rows_and_accepts_them_with_shift_a(live_server, page, log_in, users, project):
    examples = examples_create(project, TEXTS)
    services.llm_labels_store(
        project=project,
        labeler="smollm2",
        model="SmolLM2-135M-Instruct",
        prompt_version="causal-v1",
        rows=[
            LLMLabel(example_id=example.pk, label="spam", confidence=confidence, probabilities={"spam": confidence})
            for example, confidence in zip(examples, (0.9, 0.8, 0.7), strict=True)
        ],
    )
    # The desk lists the most confident first: the payload's row, then the second, then the third.
    ids = [Annotation.objects.get(example=example, kind=AnnotationKind.LLM).pk for example in examples]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    log_in(page, "project-reviewer", PASSWORD)
    page.goto(f"{live_server.url}/p/{project.slug}/llm/review/")
    rows = page.locator("#results tr[data-llm-id]")
    expect(rows).to_have_count(3)
    expect(rows.first.locator(".text-cell")).to_have_text(PAYLOAD)
    assert page.evaluate("window.__pwned") is None

    page.keyboard.press("j")
    expect(rows.nth(0)).to_have_class("llm-row is-focused")
    page.keyboard.press("x")
    page.keyboard.press("j")
    page.keyboard.press("x")
    expect(rows.nth(0).locator('input[type="checkbox"]')).to_be_checked()
    expect(rows.nth(1).locator('input[type="checkbox"]')).to_be_checked()
    expect(rows.nth(2).locator('input[type="checkbox"]')).not_to_be_checked()
    page.evaluate("window.stillTheSamePage = true")
    page.keyboard.press("Shift+A")

    expect(page.locator(".desk-notice")).to_contain_text("Accepted 2 LLM labels.")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-llm-id", str(ids[2]))
    expect(page.locator("#llm-counts")).to_contain_text("Accepted2")
    assert page.evaluate("window.stillTheSamePage") is True  # htmx swapped the table; no reload
    statuses = dict(Annotation.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert statuses == {ids[0]: "accepted", ids[1]: "accepted", ids[2]: "pending"}
    assert page.evaluate("window.__pwned") is None
    assert errors == []
    page.set_viewport_size({"width": 360, "height": 740})
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
