"""A project admin imports a file through the real worker; an annotator sees only what the role allows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

SCREENSHOT = "/tmp/fw-ui-shot.png"
CSV_ROWS = (
    "text,timestamp,label\n"
    "Great song and a great video,2024-01-01T10:00:00Z,ham\n"
    "Subscribe to my channel for free gift cards,2024-01-02T10:00:00Z,spam\n"
    "I have listened to this every day,2024-01-03T10:00:00Z,ham\n"
    "Check out my page for cheap followers,,spam\n"
    "Not sure what to think,2024-01-04T10:00:00Z,maybe\n"
)


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_admin_imports_a_csv_and_follows_it_to_the_end(
    live_server, celery_worker_process, page, log_in, users, project, tmp_path
):
    source = tmp_path / "comments.csv"
    source.write_text(CSV_ROWS, encoding="utf-8")

    log_in(page, "project-admin", PASSWORD)
    page.get_by_role("link", name=re.compile(project.name)).click()
    page.get_by_role("navigation", name=project.name).get_by_role("link", name="Import").click()
    expect(page.get_by_role("heading", name="Import examples")).to_be_visible()
    expect(page.get_by_text("rejects that row only")).to_be_visible()
    page.get_by_label("File", exact=True).set_input_files(source)
    page.get_by_role("button", name="Upload and import").click()

    expect(page).to_have_url(re.compile(r"/p/reviews/imports/\d+/$"))
    page.evaluate("window.stillTheSamePage = true")
    polls = []
    page.on("request", lambda request: polls.append(request.url) if request.headers.get("hx-request") else None)
    status = page.locator("#job-status")
    expect(status).to_have_attribute("data-job-state", "succeeded", timeout=90_000)

    assert page.evaluate("window.stillTheSamePage") is True, "the status must update in place, not by reloading"
    expect(status.locator("dt", has_text="Finished")).to_be_visible()
    expect(page.get_by_role("progressbar", name="Import progress")).to_have_attribute("aria-valuenow", "100")
    counts = {
        name: status.locator(".stat", has_text=name).locator("dd").inner_text()
        for name in ("Rows read", "Examples added", "Labels stored", "Rows rejected", "Without timestamp")
    }
    assert counts == {
        "Rows read": "5",
        "Examples added": "4",
        "Labels stored": "4",
        "Rows rejected": "1",
        "Without timestamp": "1",
    }
    rejected = page.get_by_role("table", name="Rejected rows").locator("tbody tr")
    expect(rejected).to_have_count(1)
    expect(rejected.first.locator("td").first).to_have_text("6")
    expect(rejected.first).to_contain_text("unknown label 'maybe'")
    status.get_by_text("imported without a timestamp").click()
    expect(status.locator(".warnings tbody tr")).to_have_text(re.compile(r"^\s*5\s*no timestamp"))
    page.screenshot(path=SCREENSHOT, full_page=True)

    polls_when_done = len(polls)
    page.wait_for_timeout(2500)
    assert len(polls) == polls_when_done, "polling must stop once the import has finished"

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the rejected rows (CSV)").click()
    download = download_info.value
    assert download.suggested_filename.endswith("-rejected.csv")
    report = Path(download.path()).read_text(encoding="utf-8").splitlines()
    assert report[0] == "line,reason,row"
    assert report[1].startswith("6,") and "maybe" in report[1]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_annotator_sees_no_admin_links_and_gets_403_on_import(live_server, page, log_in, users, project):
    log_in(page, "project-annotator", PASSWORD)
    page.get_by_role("link", name=re.compile(project.name)).click()

    nav = page.get_by_role("navigation", name=project.name)
    expect(nav.get_by_role("link", name="Examples")).to_be_visible()
    for hidden in ("Review", "Import", "Members"):
        expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
    expect(page.get_by_role("link", name="CSV")).to_have_count(0)
    expect(page.locator("a[href*='/export/'], a[href*='/import/'], a[href*='/review/']")).to_have_count(0)

    response = page.goto(f"{live_server.url}/p/{project.slug}/import/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="You cannot open this page")).to_be_visible()
    expect(page.get_by_text("needs the admin role")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Flywheel")).to_be_visible()
