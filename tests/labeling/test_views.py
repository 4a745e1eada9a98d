"""The web pages: who may open each one, the upload flow and its progress partial, escaping, export, report."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labeling import services, views
from labeling.models import Annotation, Example, ImportJob, ImportSource, JobState
from labeling.services.exports import EXPORT_COLUMNS

WHO = ["anonymous", "outsider", "annotator", "reviewer", "admin", "global_admin"]
RANK = {"annotator": 1, "reviewer": 2, "admin": 3, "global_admin": 3}
SCRIPT = "<script>alert(1)</script>"
GOOD_CSV = (
    "text,timestamp,label\nFirst good text,2024-01-01T10:00:00Z,ham\nBuy now at example.com,2024-01-02T10:00:00Z,spam\n"
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Hash the fixture users' passwords cheaply; the default hasher costs about a second per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _csv_upload(content: str = GOOD_CSV, name: str = "rows.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode(), content_type="text/csv")


def _client(client_for, users, who: str):
    return client_for(None if who == "anonymous" else users[who])


def _expected_status(minimum: str, who: str, allowed_status: int = 200) -> int:
    """Anonymous users go to login, non-members get 404, members below the role 403."""
    if who == "anonymous":
        return 302
    if who == "outsider":
        return 404
    return allowed_status if RANK[who] >= RANK[minimum] else 403


@pytest.fixture
def imported_job(project, tmp_path):
    """Run a real import in this process: good rows, a script tag, an unknown label and a missing timestamp."""
    source = tmp_path / "mixed.csv"
    source.write_text(
        "text,timestamp,label\n"
        "Great video,2024-01-01T10:00:00Z,ham\n"
        f"{SCRIPT},2024-01-02T10:00:00Z,spam\n"
        "Check my channel,,spam\n"
        "Who knows,2024-01-03T10:00:00Z,<img src=x onerror=alert(2)>\n",
        encoding="utf-8",
    )
    job = services.import_job_create(
        project=project, source=ImportSource.UPLOAD, filename=source.name, options=services.ImportOptions(), path=source
    )
    return services.import_job_run(job_id=job.pk)


def _url(name: str, project, job=None) -> str:
    kwargs = {"slug": project.slug}
    if job is not None:
        kwargs["job_id"] = job.pk
    return reverse(f"labeling:{name}", kwargs=kwargs)


PROJECT_PAGES = [
    ("project_overview", "annotator", False),
    ("example_browse", "annotator", False),
    ("annotation_review", "reviewer", False),
    ("import_upload", "admin", False),
    ("import_job", "admin", True),
    ("import_report", "admin", True),
    ("project_export", "reviewer", False),
    ("member_list", "admin", False),
]


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize(("name", "minimum", "needs_job"), PROJECT_PAGES)
def test_role_matrix_for_project_pages(client_for, users, project, imported_job, name, minimum, needs_job, who):
    url = _url(name, project, imported_job if needs_job else None)

    response = _client(client_for, users, who).get(url)

    assert response.status_code == _expected_status(minimum, who)
    if who == "anonymous":
        assert response["Location"].startswith(reverse("login") + "?next=")
    if response.status_code == 403:
        assert f"needs the {minimum} role in {project.name}" in response.content.decode()


@pytest.mark.parametrize("who", WHO)
def test_role_matrix_for_the_upload_post(client_for, users, project, who):
    response = _client(client_for, users, who).post(_url("import_upload", project), {"file": _csv_upload()})

    assert response.status_code == _expected_status("admin", who, allowed_status=302)
    allowed = who in {"admin", "global_admin"}
    assert ImportJob.objects.filter(project=project).count() == (1 if allowed else 0)
    if allowed:
        job = ImportJob.objects.get(project=project)
        assert response["Location"] == _url("import_job", project, job)


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("name", ["project_list", "password_change"])
def test_role_matrix_for_account_pages(client_for, users, name, who):
    response = _client(client_for, users, who).get(reverse(name if name == "password_change" else f"labeling:{name}"))

    assert response.status_code == (302 if who == "anonymous" else 200)


def test_unknown_project_is_404_even_for_a_global_admin(client_for, users):
    response = client_for(users["global_admin"]).get(reverse("labeling:project_overview", kwargs={"slug": "nope"}))

    assert response.status_code == 404


def test_a_job_of_another_project_is_404(client_for, users, project, other_project, tmp_path):
    other_job = ImportJob.objects.create(
        project=other_project, source=ImportSource.UPLOAD, filename="x.csv", path=str(tmp_path / "x.csv")
    )
    url = reverse("labeling:import_job", kwargs={"slug": project.slug, "job_id": other_job.pk})

    assert client_for(users["admin"]).get(url).status_code == 404


def test_project_list_shows_member_projects_and_an_empty_state(client_for, users, project, other_project):
    annotator_page = client_for(users["annotator"]).get(reverse("labeling:project_list")).content.decode()
    outsider_page = client_for(users["outsider"]).get(reverse("labeling:project_list")).content.decode()
    boss_page = client_for(users["global_admin"]).get(reverse("labeling:project_list")).content.decode()

    assert project.name in annotator_page and other_project.name not in annotator_page
    assert "No projects yet" in outsider_page and project.name not in outsider_page
    assert project.name in boss_page and other_project.name in boss_page


@pytest.mark.parametrize(
    ("who", "visible", "hidden"),
    [
        ("annotator", ["example_browse"], ["annotation_review", "import_upload", "member_list", "project_export"]),
        ("reviewer", ["example_browse", "annotation_review", "project_export"], ["import_upload", "member_list"]),
        ("admin", ["example_browse", "annotation_review", "project_export", "import_upload", "member_list"], []),
    ],
)
def test_overview_links_only_what_the_role_allows(client_for, users, project, who, visible, hidden):
    page = client_for(users[who]).get(_url("project_overview", project)).content.decode()

    for name in visible:
        assert f'href="{_url(name, project)}' in page, name
    for name in hidden:
        assert f'href="{_url(name, project)}' not in page, name


def test_overview_shows_labels_counts_and_recent_imports(client_for, users, project, imported_job):
    page = client_for(users["annotator"]).get(_url("project_overview", project)).content.decode()

    assert "Advertising or links unrelated to the video." in page
    assert "<kbd>1</kbd>" in page
    assert imported_job.filename in page
    assert 'role-annotator">Annotator' in page


def test_upload_creates_a_job_and_queues_it_on_commit(client_for, users, project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(users["admin"]).post(
            _url("import_upload", project),
            {
                "file": _csv_upload(),
                "format": "csv",
                "label_map": "1=spam, 0=ham",
                "create_missing_labels": "on",
                "encoding": "utf-8",
            },
        )

    job = ImportJob.objects.get(project=project)
    assert response.status_code == 302 and response["Location"] == _url("import_job", project, job)
    assert len(callbacks) == 1
    assert job.state == JobState.QUEUED and job.source == ImportSource.UPLOAD
    assert job.created_by_id == users["admin"].pk and job.filename == "rows.csv"
    assert job.options["label_map"] == {"1": "spam", "0": "ham"}
    assert job.options["create_missing_labels"] is True and job.options["format"] == "csv"
    assert Path(job.path).read_text() == GOOD_CSV


def test_upload_by_htmx_renders_the_job_page_and_pushes_its_url(client_for, users, project):
    response = client_for(users["admin"]).post(
        _url("import_upload", project), {"file": _csv_upload()}, headers={"HX-Request": "true"}
    )

    job = ImportJob.objects.get(project=project)
    assert response.status_code == 200
    assert response["HX-Push-Url"] == _url("import_job", project, job)
    assert 'data-job-state="queued"' in response.content.decode()


def test_upload_without_a_file_rerenders_the_form_with_400(client_for, users, project):
    response = client_for(users["admin"]).post(_url("import_upload", project), {"format": "csv", "label_map": "1=x"})

    assert response.status_code == 400
    page = response.content.decode()
    assert views.ERROR_NO_FILE in page
    assert 'value="1=x"' in page
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"label_map": "spam"}, "Label map entry &#x27;spam&#x27; is not of the form value=label."),
        ({"format": "xml"}, "Select a valid choice."),
    ],
)
def test_upload_with_bad_options_rerenders_the_form_with_400(client_for, users, project, data, message):
    response = client_for(users["admin"]).post(_url("import_upload", project), {"file": _csv_upload(), **data})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()


def test_progress_partial_polls_while_running_and_stops_with_286_when_finished(
    client_for, users, project, imported_job, tmp_path
):
    running = ImportJob.objects.create(
        project=project,
        source=ImportSource.UPLOAD,
        filename="big.csv",
        path=str(tmp_path / "big.csv"),
        state=JobState.RUNNING,
        progress=0.4,
        result={"rows_read": 1200, "examples_created": 1100},
    )
    client = client_for(users["admin"])

    while_running = client.get(_url("import_job", project, running), headers={"HX-Request": "true"})
    finished = client.get(_url("import_job", project, imported_job), headers={"HX-Request": "true"})
    full_page = client.get(_url("import_job", project, imported_job))

    assert while_running.status_code == 200
    partial = while_running.content.decode()
    assert 'hx-trigger="every 1s"' in partial and 'aria-valuenow="40"' in partial and "1,200" in partial
    assert "<html" not in partial
    assert finished.status_code == 286
    assert "hx-trigger" not in finished.content.decode()
    assert full_page.status_code == 200 and "<html" in full_page.content.decode()


def test_job_page_shows_counts_rejected_rows_and_warnings_escaped(client_for, users, project, imported_job):
    assert imported_job.state == JobState.SUCCEEDED, imported_job.message

    page = client_for(users["admin"]).get(_url("import_job", project, imported_job)).content.decode()

    assert imported_job.message in page.replace("&#x27;", "'")
    assert '<td class="num">5</td>' in page  # the rejected row's line number
    assert "unknown label" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "imported without a timestamp" in page
    assert _url("import_report", project, imported_job) in page
    assert 'aria-valuenow="100"' in page


def test_examples_page_escapes_text(client_for, users, project, imported_job):
    page = client_for(users["annotator"]).get(_url("example_browse", project)).content.decode()

    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "no timestamp" in page
    assert "Imported</span> · import" in page


def test_examples_search_filter_and_htmx_partial(client_for, users, project, imported_job):
    client = client_for(users["annotator"])

    found = client.get(_url("example_browse", project), {"q": "great"}, headers={"HX-Request": "true"})
    unlabeled = client.get(_url("example_browse", project), {"labeled": "no"})

    partial = found.content.decode()
    assert found.status_code == 200 and "<html" not in partial and 'id="results"' in partial
    assert "Great video" in partial and "Check my channel" not in partial
    assert "No matching examples" in unlabeled.content.decode()


def test_examples_are_paginated_by_50(client_for, users, project):
    Example.objects.bulk_create(
        Example(project=project, text=f"text {number}", content_hash=f"{number:064d}") for number in range(60)
    )
    client = client_for(users["annotator"])

    first = client.get(_url("example_browse", project)).content.decode()
    second = client.get(_url("example_browse", project), {"page": 2}).content.decode()

    assert first.count('<td class="text-cell">') == 50 and "1–50 of 60" in first and "?page=2" in first
    assert second.count('<td class="text-cell">') == 10 and "51–60 of 60" in second


def test_review_lists_annotations_filtered_by_kind(client_for, users, project, imported_job):
    client = client_for(users["reviewer"])

    imported = client.get(_url("annotation_review", project), {"kind": "imported"}).content.decode()
    human = client.get(_url("annotation_review", project), {"kind": "human"}).content.decode()

    assert "Great video" in imported and SCRIPT not in imported
    assert "No annotations of this kind" in human


def test_export_streams_csv_with_header_and_rows(client_for, users, project, imported_job):
    response = client_for(users["reviewer"]).get(_url("project_export", project), {"format": "csv"})

    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == "attachment; filename=reviews-labels.csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert list(rows[0]) == EXPORT_COLUMNS
    assert len(rows) == Annotation.objects.filter(example__project=project).count() == 3
    assert {row["text"] for row in rows} == {"Great video", SCRIPT, "Check my channel"}


@pytest.mark.parametrize(("fmt", "extension"), [("jsonl", "jsonl"), ("labelstudio", "json")])
def test_export_other_formats(client_for, users, project, imported_job, fmt, extension):
    response = client_for(users["reviewer"]).get(_url("project_export", project), {"format": fmt})

    body = b"".join(response.streaming_content).decode()
    assert response["Content-Disposition"] == f"attachment; filename=reviews-labels.{extension}"
    assert response["Content-Type"] == services.EXPORT_FORMATS[fmt][0]
    parsed = [json.loads(line) for line in body.splitlines()] if fmt == "jsonl" else json.loads(body)
    assert len(parsed) == 3


def test_export_unknown_format_is_400(client_for, users, project):
    response = client_for(users["reviewer"]).get(_url("project_export", project), {"format": "xlsx"})

    assert response.status_code == 400
    assert "Unknown export format &#x27;xlsx&#x27;; use one of csv, jsonl, labelstudio." in response.content.decode()


def test_report_download_and_404_when_absent(client_for, users, project, imported_job, tmp_path):
    client = client_for(users["admin"])
    without_report = ImportJob.objects.create(
        project=project, source=ImportSource.UPLOAD, filename="ok.csv", path=str(tmp_path / "ok.csv")
    )
    missing_file = ImportJob.objects.create(
        project=project,
        source=ImportSource.UPLOAD,
        filename="gone.csv",
        path=str(tmp_path / "gone.csv"),
        report_path=str(Path(settings.REPORT_DIR) / "no-such-report.csv"),
    )

    response = client.get(_url("import_report", project, imported_job))

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="reviews-import-{imported_job.pk}-rejected.csv"'
    report = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert report[0] == ["line", "reason", "row"]
    assert report[1][0] == "5" and "unknown label" in report[1][1]
    assert client.get(_url("import_report", project, without_report)).status_code == 404
    assert client.get(_url("import_report", project, missing_file)).status_code == 404


def test_members_page_lists_roles_and_the_command(client_for, users, project):
    page = client_for(users["admin"]).get(_url("member_list", project)).content.decode()

    for role in ("admin", "reviewer", "annotator"):
        assert f"project-{role}" in page
    assert "outsider" not in page
    assert f"python manage.py add_member {project.slug}" in page


def test_login_form_logs_in_and_logout_needs_post(client, users):
    login_page = client.get(reverse("login"))
    logged_in = client.post(
        reverse("login"), {"username": "project-annotator", "password": "correct-horse-battery-staple"}
    )
    page = client.get(reverse("labeling:project_list")).content.decode()
    logout_by_get = client.get(reverse("logout"))
    logged_out = client.post(reverse("logout"))
    after = client.get(reverse("labeling:project_list"))

    assert login_page.status_code == 200 and 'autocomplete="current-password"' in login_page.content.decode()
    assert logged_in.status_code == 302 and logged_in["Location"] == reverse("labeling:project_list")
    assert f'action="{reverse("logout")}"' in page and 'hx-headers=\'{"x-csrftoken": "' in page
    assert logout_by_get.status_code == 405
    assert logged_out.status_code == 302 and logged_out["Location"] == reverse("login")
    assert after.status_code == 302 and after["Location"].startswith(reverse("login"))


def test_login_with_a_wrong_password_explains(client, users):
    response = client.post(reverse("login"), {"username": "project-annotator", "password": "wrong"})

    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
