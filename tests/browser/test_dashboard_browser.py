"""A reviewer opens the flywheel dashboard in real Chromium: every chart draws, on a desktop and on a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from labeling import services
from tests.conftest import PASSWORD
from tests.flywheel.factories import busy_project

PAYLOAD = "<script>window.__pwned=1</script>"
CHARTS = 7
PAINTED = """() => [...document.querySelectorAll('.chart-box canvas')].map((canvas) => {
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let alpha = 3; alpha < pixels.length; alpha += 4) { if (pixels[alpha]) return true; }
  return false;
})"""


def _is_error(message) -> bool:
    """A console error, except the browser's own request for /favicon.ico (the site has none)."""
    return message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico")


def _canvas_sizes(page) -> list[dict]:
    return page.locator(".chart-box canvas").evaluate_all(
        "(canvases) => canvases.map((c) => ({id: c.id, width: c.getBoundingClientRect().width,"
        " height: c.getBoundingClientRect().height, buffer: c.width * c.height, chart: !!Chart.getChart(c)}))"
    )


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_dashboard_draws_every_chart_at_desktop_and_phone_width(live_server, page, log_in, users, project, make_user):
    hostile = make_user(PAYLOAD)
    services.member_add(project=project, username=hostile.username, role="annotator")
    busy_project(project, [users["annotator"], hostile], users["reviewer"])
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if _is_error(message) else None)

    log_in(page, "project-reviewer", PASSWORD)
    page.get_by_role("link", name=re.compile(project.name)).click()
    expect(page.get_by_role("heading", name="What to do next")).to_be_visible()
    page.get_by_role("navigation", name=project.name).get_by_role("link", name="Dashboard").click()

    expect(page.get_by_role("heading", name="Flywheel dashboard")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("data-dashboard-charts", "drawn")
    expect(page.locator(".chart-box canvas")).to_have_count(CHARTS)
    sizes = _canvas_sizes(page)
    assert all(size["width"] > 0 and size["height"] > 0 and size["buffer"] > 0 and size["chart"] for size in sizes), (
        sizes
    )
    assert all(page.evaluate(PAINTED)), "every chart paints something"
    assert page.evaluate("window.__pwned") is None
    expect(page.get_by_role("heading", name="What to do next")).to_be_visible()
    expect(page.get_by_role("link", name="Review 4 LLM labels")).to_be_visible()

    people = page.locator("section", has=page.get_by_role("heading", name="Annotator throughput"))
    people.get_by_text("Show the numbers").click()  # the username shows as text, never as markup
    expect(page.get_by_role("table", name="Human labels per day by annotator")).to_contain_text(PAYLOAD)

    artifacts = Path(settings.DATA_DIR) / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "dashboard-1280.png"), full_page=True)

    page.set_viewport_size({"width": 360, "height": 740})
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart-box canvas')].every((c) => c.getBoundingClientRect().width <= 340)"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    narrow = _canvas_sizes(page)
    assert all(0 < size["width"] <= 340 and size["height"] > 0 for size in narrow), narrow
    page.screenshot(path=str(artifacts / "dashboard-360.png"), full_page=True)
    assert errors == []
