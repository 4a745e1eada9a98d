"""An annotator labels with the keyboard only: label keys, arrows and Enter, undo, skip; the page never runs the text."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from labeling import services
from labeling.models import (
    Annotation,
    AnnotationEvent,
    AnnotationEventKind,
    AnnotationKind,
    AnnotationStatus,
    Example,
    QueueItem,
)
from tests.conftest import PASSWORD
from tests.labeling.factories import run_import

PAYLOAD = "<script>window.__pwned = 1</script><b>bold?</b>"
TEXTS = [
    PAYLOAD,
    "Great song and a great video",
    "Subscribe to my channel for free gift cards",
    "I have listened to this every day",
    "Check out my page for cheap followers",
    "This one gets skipped",
    "Who else is here in 2024?",
    "Love the choreography",
]


def _csv(texts: list[str]) -> str:
    rows = [f'"{text}",2024-01-{day:02d}T10:00:00Z,' for day, text in enumerate(texts, start=1)]
    return "text,date,label\n" + "\n".join(rows) + "\n"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_annotator_labels_undoes_and_skips_with_the_keyboard_only(live_server, page, log_in, users, project):
    run_import(project, _csv(TEXTS))
    ids = {}
    for rank, text in enumerate(TEXTS):
        example = Example.objects.get(project=project, text=text)
        QueueItem.objects.filter(example=example).update(priority=100.0 - rank)
        ids[text] = str(example.pk)
    a, b, c, d, e, f, g, _ = (ids[text] for text in TEXTS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    artifacts = Path(settings.DATA_DIR) / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)

    log_in(page, "project-annotator", PASSWORD)
    page.get_by_role("link", name=re.compile(project.name)).click()
    page.get_by_role("navigation", name=project.name).get_by_role("link", name="Annotate").click()

    card = page.locator("#annotate-card")
    expect(card).to_have_attribute("data-example-id", a)
    expect(card.locator(".annotate-text")).to_have_text(PAYLOAD)
    expect(card.get_by_text("Why this item:")).to_be_visible()
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=str(artifacts / "annotate-1280.png"), full_page=True)
    page.set_viewport_size({"width": 360, "height": 740})
    page.screenshot(path=str(artifacts / "annotate-360.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.set_viewport_size({"width": 1280, "height": 900})

    page.evaluate("window.stillTheSamePage = true")
    page.keyboard.press("?")
    expect(page.locator("#annotate-keys")).to_have_attribute("open", "")
    page.keyboard.press("?")
    expect(page.locator("#annotate-keys")).not_to_have_attribute("open", "")

    page.keyboard.press("1")
    expect(card).to_have_attribute("data-example-id", b)
    expect(page.locator("#annotate-status")).to_have_text("Saved ‘spam’.")

    page.keyboard.down("2")
    page.keyboard.down("2")  # a held key repeats; it must label once
    page.keyboard.up("2")
    expect(card).to_have_attribute("data-example-id", c)

    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(card.locator(".label-button.is-selected")).to_have_attribute("value", "ham")
    page.keyboard.press("Enter")
    expect(card).to_have_attribute("data-example-id", d)

    page.keyboard.press("1")
    expect(card).to_have_attribute("data-example-id", e)
    page.keyboard.press("u")
    expect(card).to_have_attribute("data-example-id", d)
    expect(page.locator("#annotate-status")).to_have_text("Undid your label ‘spam’ — choose again.")
    page.keyboard.press("2")
    expect(card).to_have_attribute("data-example-id", e)

    page.keyboard.press("s")
    expect(card).to_have_attribute("data-example-id", f)
    page.keyboard.press("1")
    expect(card).to_have_attribute("data-example-id", g)

    expect(page.locator('[data-counter="done"]')).to_have_text("5")
    expect(page.locator('[data-counter="today"]')).to_have_text("5")
    expect(page.locator('[data-counter="total"]')).to_have_text(str(len(TEXTS)))
    percent = round(5 * 100 / len(TEXTS))
    expect(page.get_by_role("progressbar", name="Project progress")).to_have_attribute("aria-valuenow", str(percent))

    annotator = users["annotator"]
    mine = Annotation.objects.filter(author=annotator, kind=AnnotationKind.HUMAN)
    labels = {str(row.example_id): row.label.name for row in mine.filter(status=AnnotationStatus.SUBMITTED)}
    assert labels == {a: "spam", b: "ham", c: "ham", d: "ham", f: "spam"}
    withdrawn = mine.get(status=AnnotationStatus.WITHDRAWN)
    assert (str(withdrawn.example_id), withdrawn.label.name) == (d, "spam")
    assert mine.count() == 6
    events = AnnotationEvent.objects.filter(actor=annotator)
    assert [(event.kind, str(event.example_id)) for event in events.order_by("id")] == [
        (AnnotationEventKind.UNDO, d),
        (AnnotationEventKind.SKIP, e),
    ]
    assert page.evaluate("window.__pwned") is None
    assert page.evaluate("window.stillTheSamePage") is True, "every action must swap the card, not reload the page"

    # The open card's lease lapses (expiry sweep): the next heartbeat says so and stops polling.
    services.queue_leases_expire(now=timezone.now() + timedelta(hours=1), project=project)
    with page.expect_response(lambda response: response.url.endswith("/annotate/heartbeat/")) as beat:
        page.locator("[data-heartbeat]").dispatch_event("flywheel:heartbeat")
    assert beat.value.status == 286
    expect(page.locator("#annotate-status")).to_contain_text("This item's reservation lapsed; reload for a new one")
    expect(page.locator("#annotate-status").get_by_role("link", name="Reload")).to_be_visible()
    assert errors == []
