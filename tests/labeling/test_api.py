"""The JSON API under /api/v1/: who may call what, and what each endpoint does end to end."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from labeling import services
from labeling.api.projects import ERROR_EXPORT_FORMAT, ERROR_NO_BODY, ERROR_NO_EXAMPLES, ERROR_NOT_GLOBAL_ADMIN
from labeling.models import Annotation, ApiToken, Example, ImportJob, ImportSource, Label, Membership, Project
from labeling.services.projects import (
    ERROR_BAD_SLUG,
    ERROR_DUPLICATE_LABEL,
    ERROR_NO_NAME,
    ERROR_SLUG_TAKEN,
    ERROR_SLUG_TOO_LONG,
)

API = "/api/v1"
USER_CALLERS = ("outsider", "annotator", "reviewer", "admin", "global_admin")
CALLERS = ("anonymous", "bad_token", *USER_CALLERS)

# Expected status per endpoint and caller; the same for a bearer token and a browser session.
EXPECTED: dict[str, dict[str, int]] = {
    "project_list": {
        "anonymous": 401,
        "bad_token": 401,
        "outsider": 200,
        "annotator": 200,
        "reviewer": 200,
        "admin": 200,
        "global_admin": 200,
    },
    "project_create": {
        "anonymous": 401,
        "bad_token": 401,
        "outsider": 403,
        "annotator": 403,
        "reviewer": 403,
        "admin": 403,
        "global_admin": 201,
    },
    "project_detail": {
        "anonymous": 401,
        "bad_token": 401,
        "outsider": 404,
        "annotator": 200,
        "reviewer": 200,
        "admin": 200,
        "global_admin": 200,
    },
    "examples_import": {
        "anonymous": 401,
        "bad_token": 401,
        "outsider": 404,
        "annotator": 403,
        "reviewer": 403,
        "admin": 202,
        "global_admin": 202,
    },
    "job_detail": {
        "anonymous": 401,
        "bad_token": 401,
        "outsider": 404,
        "annotator": 403,
        "reviewer": 403,
        "admin": 200,
        "global_admin": 200,
    },
    "project_export": {
        "anonymous": 401,
        "bad_token": 401,
        "outsider": 404,
        "annotator": 403,
        "reviewer": 200,
        "admin": 200,
        "global_admin": 200,
    },
}

ENDPOINTS: dict[str, Callable[[Client, dict[str, str], dict[str, Any]], Any]] = {
    "project_list": lambda client, headers, ctx: client.get(f"{API}/projects", headers=headers),
    "project_create": lambda client, headers, ctx: client.post(
        f"{API}/projects",
        {"slug": "fresh", "name": "Fresh", "labels": [{"name": "a", "description": "A."}]},
        content_type="application/json",
        headers=headers,
    ),
    "project_detail": lambda client, headers, ctx: client.get(f"{API}/projects/reviews", headers=headers),
    "examples_import": lambda client, headers, ctx: client.post(
        f"{API}/projects/reviews/examples",
        {"examples": [{"text": "Check out my channel"}]},
        content_type="application/json",
        headers=headers,
    ),
    "job_detail": lambda client, headers, ctx: client.get(f"{API}/jobs/{ctx['job_id']}", headers=headers),
    "project_export": lambda client, headers, ctx: client.get(
        f"{API}/projects/reviews/export?format=csv", headers=headers
    ),
}


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Hash test passwords quickly; the `users` fixture makes five users per test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _matrix() -> list[Any]:
    cases = []
    for endpoint, expected in EXPECTED.items():
        for caller in CALLERS:
            transports = ("token", "session") if caller in USER_CALLERS else ("none",)
            for transport in transports:
                cases.append(
                    pytest.param(endpoint, caller, transport, expected[caller], id=f"{endpoint}-{caller}-{transport}")
                )
    return cases


def bearer(raw: str) -> dict[str, str]:
    return {"authorization": f"Bearer {raw}"}


@pytest.fixture
def tokens(users) -> dict[str, str]:
    """One API token per user of the `users` fixture."""
    return {role: services.api_token_create(user=user, name="tests")[1] for role, user in users.items()}


@pytest.fixture
def queued_job(project) -> ImportJob:
    """A queued (not run) JSON import in the `reviews` project."""
    return services.import_job_create(
        project=project,
        source=ImportSource.API,
        filename="api.jsonl",
        options=services.ImportOptions(format="jsonl"),
        records=[{"text": "hello", "observed_at": None, "label": None}],
    )


@pytest.fixture
def admin_api(tokens) -> Callable[..., Any]:
    """Call the API as the project admin with a bearer token."""
    client = Client()

    def call(method: str, path: str, **kwargs: Any) -> Any:
        return getattr(client, method)(f"{API}{path}", headers=bearer(tokens["admin"]), **kwargs)

    return call


def _post_examples(admin_api: Callable[..., Any], examples: list[dict[str, Any]], **extra: Any) -> int:
    response = admin_api(
        "post", "/projects/reviews/examples", data={"examples": examples, **extra}, content_type="application/json"
    )
    assert response.status_code == 202, response.content
    return response.json()["job_id"]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "caller", "transport", "status"), _matrix())
def test_role_matrix(endpoint, caller, transport, status, users, tokens, queued_job, client_for):
    if caller == "anonymous":
        client, headers = Client(), {}
    elif caller == "bad_token":
        client, headers = Client(), bearer("fw_not-a-real-token")
    elif transport == "token":
        client, headers = Client(), bearer(tokens[caller])
    else:
        client, headers = client_for(users[caller]), {}

    response = ENDPOINTS[endpoint](client, headers, {"job_id": queued_job.pk})

    assert response.status_code == status, getattr(response, "content", b"")
    if status >= 400:
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["detail"]
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Token fw_abc", "fw_abc", "Basic dXNlcjpwYXNz", "Bearer fw_" + "x" * 300],
)
def test_malformed_authorization_headers_are_401(authorization, users):
    response = Client().get(f"{API}/projects", headers={"authorization": authorization})

    assert response.status_code == 401


@pytest.mark.django_db
def test_session_post_without_csrf_token_is_refused(users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])

    response = client.post(
        f"{API}/projects/reviews/examples", {"examples": [{"text": "x"}]}, content_type="application/json"
    )

    assert response.status_code == 403
    assert ImportJob.objects.count() == 0


@pytest.mark.django_db
def test_session_post_with_csrf_token_is_accepted(users):
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    secret = "a" * 32
    client.cookies["csrftoken"] = secret

    response = client.post(
        f"{API}/projects/reviews/examples",
        {"examples": [{"text": "x"}]},
        content_type="application/json",
        headers={"x-csrftoken": secret},
    )

    assert response.status_code == 202, response.content


@pytest.mark.django_db
def test_bearer_post_needs_no_csrf_token_and_anonymous_post_is_401(users, tokens):
    client = Client(enforce_csrf_checks=True)
    body = {"examples": [{"text": "x"}]}

    anonymous = client.post(f"{API}/projects/reviews/examples", body, content_type="application/json")
    with_token = client.post(
        f"{API}/projects/reviews/examples", body, content_type="application/json", headers=bearer(tokens["admin"])
    )

    assert anonymous.status_code == 401
    assert with_token.status_code == 202


@pytest.mark.django_db
def test_revoked_token_is_rejected(users, tokens):
    ApiToken.objects.filter(user=users["admin"]).update(revoked_at=timezone.now())

    response = Client().get(f"{API}/projects", headers=bearer(tokens["admin"]))

    assert response.status_code == 401


@pytest.mark.django_db
def test_token_of_inactive_user_is_rejected(users, tokens):
    users["admin"].is_active = False
    users["admin"].save(update_fields=["is_active"])

    response = Client().get(f"{API}/projects", headers=bearer(tokens["admin"]))

    assert response.status_code == 401


@pytest.mark.django_db
def test_token_is_stored_hashed_and_never_raw(users):
    token, raw = services.api_token_create(user=users["reviewer"], name="laptop")
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)

    assert raw not in dump.getvalue()
    assert token.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(token.prefix) and len(token.prefix) < len(raw) // 3
    assert Client().get(f"{API}/projects", headers=bearer(raw)).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.django_db
def test_create_project(users, tokens):
    response = Client().post(
        f"{API}/projects",
        {
            "slug": "tickets",
            "name": "Support tickets",
            "description": "Route incoming tickets.",
            "labels": [{"name": "billing", "description": "Money."}, {"name": "bug", "description": "Broken."}],
        },
        content_type="application/json",
        headers=bearer(tokens["global_admin"]),
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "tickets"
    assert body["name"] == "Support tickets"
    assert body["description"] == "Route incoming tickets."
    assert body["labels"] == [
        {"name": "billing", "description": "Money.", "shortcut": "1", "order": 0, "parent": None},
        {"name": "bug", "description": "Broken.", "shortcut": "2", "order": 1, "parent": None},
    ]
    assert body["counts"] == {"examples": 0, "labeled": 0, "queued": 0}
    assert body["role"] == "admin"
    project = Project.objects.get(slug="tickets")
    assert project.created_by_id == users["global_admin"].pk
    assert not Membership.objects.filter(project=project).exists()
    detail = Client().get(f"{API}/projects/tickets", headers=bearer(tokens["global_admin"]))
    assert detail.status_code == 200


@pytest.mark.django_db
def test_create_project_as_superuser(make_user):
    superuser = make_user("root", is_superuser=True, is_staff=True)
    _, raw = services.api_token_create(user=superuser)

    response = Client().post(
        f"{API}/projects", {"slug": "s", "name": "S"}, content_type="application/json", headers=bearer(raw)
    )

    assert response.status_code == 201
    assert response.json()["labels"] == []


@pytest.mark.django_db
def test_create_project_refused_to_project_admin_says_why(users, tokens):
    response = Client().post(
        f"{API}/projects", {"slug": "x", "name": "X"}, content_type="application/json", headers=bearer(tokens["admin"])
    )

    assert response.status_code == 403
    assert response.json() == {"detail": ERROR_NOT_GLOBAL_ADMIN}
    assert not Project.objects.filter(slug="x").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "status", "detail"),
    [
        ({"slug": "reviews", "name": "Again"}, 409, ERROR_SLUG_TAKEN.format(slug="reviews")),
        ({"slug": "not a slug!", "name": "Bad"}, 400, ERROR_BAD_SLUG.format(slug="not a slug!")),
        ({"slug": "s" * 65, "name": "Long"}, 400, ERROR_SLUG_TOO_LONG.format(length=65)),
        ({"slug": "fine", "name": "  "}, 400, ERROR_NO_NAME),
        (
            {"slug": "fine", "name": "Dup", "labels": [{"name": "spam"}, {"name": "Spam"}]},
            400,
            ERROR_DUPLICATE_LABEL.format(name="Spam"),
        ),
    ],
    ids=["duplicate-slug", "bad-slug", "long-slug", "no-name", "duplicate-label"],
)
def test_create_project_errors(payload, status, detail, users, tokens):
    before = Project.objects.count()

    response = Client().post(
        f"{API}/projects", payload, content_type="application/json", headers=bearer(tokens["global_admin"])
    )

    assert response.status_code == status
    assert response.json() == {"detail": detail}
    assert Project.objects.count() == before


@pytest.mark.django_db
def test_project_list_shows_only_the_callers_projects(users, tokens, other_project):
    mine = Client().get(f"{API}/projects", headers=bearer(tokens["annotator"])).json()
    everything = Client().get(f"{API}/projects", headers=bearer(tokens["global_admin"])).json()
    nothing = Client().get(f"{API}/projects", headers=bearer(tokens["outsider"])).json()

    assert [project["slug"] for project in mine] == ["reviews"]
    assert mine[0]["name"] == "Product reviews"
    assert [label["name"] for label in mine[0]["labels"]] == ["spam", "ham"]
    assert mine[0]["labels"][0]["description"] == "Advertising or links unrelated to the video."
    assert sorted(project["slug"] for project in everything) == ["other", "reviews"]
    assert nothing == []


@pytest.mark.django_db
def test_project_detail_counts_after_import(project, users, tokens, admin_api):
    child = Label.objects.create(project=project, name="spam/link", parent=Label.objects.get(name="spam"), order=5)
    job_id = _post_examples(
        admin_api,
        [
            {"text": "Subscribe to my channel", "label": "spam"},
            {"text": "Great song", "label": "ham"},
            {"text": "Not labeled yet"},
        ],
    )
    services.import_job_run(job_id=job_id)

    body = Client().get(f"{API}/projects/reviews", headers=bearer(tokens["reviewer"])).json()

    assert body["counts"] == {"examples": 3, "labeled": 2, "queued": 1}
    assert body["role"] == "reviewer"
    assert body["slug"] == "reviews"
    assert body["labels"][0] == {
        "name": "spam",
        "description": "Advertising or links unrelated to the video.",
        "shortcut": "1",
        "order": 0,
        "parent": None,
    }
    assert body["labels"][-1]["name"] == child.name
    assert body["labels"][-1]["parent"] == "spam"


@pytest.mark.django_db
def test_json_examples_import_end_to_end(project, users, admin_api):
    response = admin_api(
        "post",
        "/projects/reviews/examples",
        data={
            "examples": [
                {
                    "text": "Visit my site",
                    "observed_at": "2024-03-01T12:00:00Z",
                    "label": "spam",
                    "meta": {"source": "web", "author": "x1", "text": "ignored", "label": "ignored"},
                },
                {"text": "Lovely", "observed_at": 1709294400, "label": "maybe"},
                {"text": "No label, no time"},
            ],
            "create_missing_labels": True,
        },
        content_type="application/json",
    )

    assert response.status_code == 202, response.content
    body = response.json()
    assert body == {"job_id": body["job_id"], "state": "queued", "url": f"/api/v1/jobs/{body['job_id']}"}
    job = ImportJob.objects.get(pk=body["job_id"])
    assert job.source == ImportSource.API
    assert job.filename == "api.jsonl"
    assert job.created_by_id == users["admin"].pk

    job = services.import_job_run(job_id=job.pk)

    assert job.state == "succeeded", job.message
    visit = Example.objects.get(project=project, text="Visit my site")
    assert visit.meta == {"source": "web", "author": "x1"}
    assert visit.observed_at.isoformat() == "2024-03-01T12:00:00+00:00"
    assert Example.objects.get(text="Lovely").observed_at.isoformat() == "2024-03-01T12:00:00+00:00"
    assert Example.objects.get(text="No label, no time").observed_at is None
    assert Label.objects.filter(project=project, name="maybe").exists()
    assert set(Annotation.objects.filter(example__project=project).values_list("label__name", "kind")) == {
        ("spam", "imported"),
        ("maybe", "imported"),
    }


@pytest.mark.django_db
def test_json_import_rejects_unknown_labels_row_by_row(project, users, admin_api):
    job_id = _post_examples(admin_api, [{"text": "ok", "label": "spam"}, {"text": "bad", "label": "nope"}])

    services.import_job_run(job_id=job_id)
    body = admin_api("get", f"/jobs/{job_id}").json()

    assert body["state"] == "succeeded"
    assert body["result"]["examples_created"] == 1
    assert body["result"]["rows_rejected"] == 1
    assert body["error_count"] == 1
    assert body["errors"][0]["line"] == 2
    assert "unknown label 'nope'" in body["errors"][0]["reason"]
    assert not Label.objects.filter(name="nope").exists()


CSV_UPLOAD = (
    "COMMENT_ID,AUTHOR,DATE,CONTENT,CLASS\n"
    "c1,Ann,2013-11-07T06:20:48,Huge fan of this song,0\n"
    "c2,Bob,2013-11-07T12:37:15,Check out my channel http://x.example,1\n"
    'c3,Cy,,"Quoted, with a comma",0\n'
)


@pytest.mark.django_db
def test_multipart_csv_upload_end_to_end(project, users, admin_api):
    upload = io.BytesIO(CSV_UPLOAD.encode())
    upload.name = "youtube.csv"

    response = admin_api(
        "post",
        "/projects/reviews/examples",
        data={
            "file": upload,
            "format": "csv",
            "text_field": "CONTENT",
            "time_field": "DATE",
            "label_field": "CLASS",
            "label_map": "1=spam,0=ham",
            "create_missing_labels": "false",
            "unescape_html": "true",
            "encoding": "utf-8",
        },
    )

    assert response.status_code == 202, response.content
    job = ImportJob.objects.get(pk=response.json()["job_id"])
    assert job.filename == "youtube.csv"
    assert job.options["label_map"] == {"1": "spam", "0": "ham"}
    assert job.options["create_missing_labels"] is False
    assert job.options["unescape_html"] is True

    job = services.import_job_run(job_id=job.pk)

    assert job.state == "succeeded", job.message
    assert job.result["examples_created"] == 3
    assert job.result["annotations_created"] == 3
    assert job.result["rows_without_timestamp"] == 1
    spam = Example.objects.get(project=project, text__startswith="Check out")
    assert spam.meta == {"COMMENT_ID": "c2", "AUTHOR": "Bob"}
    assert spam.annotations.get().label.name == "spam"
    assert Example.objects.filter(text="Quoted, with a comma").exists()


@pytest.mark.django_db
def test_multipart_upload_detects_the_format_from_the_file(project, users, admin_api):
    upload = io.BytesIO(b'{"text": "one", "label": "spam"}\n{"text": "two"}\n')
    upload.name = "rows.jsonl"

    response = admin_api("post", "/projects/reviews/examples", data={"file": upload})
    job = services.import_job_run(job_id=response.json()["job_id"])

    assert job.state == "succeeded", job.message
    assert job.result["format"] == "jsonl"
    assert job.result["examples_created"] == 2


def _upload(name: str = "x.csv", content: bytes = b"text\nhello\n") -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "detail"),
    [
        ({"data": {"examples": []}, "content_type": "application/json"}, ERROR_NO_EXAMPLES),
        ({"data": {"rows": [{"text": "x"}]}, "content_type": "application/json"}, ERROR_NO_BODY),
        ({"data": [{"text": "x"}], "content_type": "application/json"}, ERROR_NO_BODY),
        ({"data": "{not json", "content_type": "application/json"}, "The body is not valid JSON"),
        (
            {"data": '{"examples": [{"text": "x", "meta": {"a": Infinity}}]}', "content_type": "application/json"},
            "Infinity is not a JSON value",
        ),
        ({"data": b"\xff\xfe{", "content_type": "application/json"}, "The body is not valid JSON"),
        ({"data": {"examples": [{"label": "spam"}]}, "content_type": "application/json"}, "examples.0.text"),
        ({"data": {"examples": "text"}, "content_type": "application/json"}, "examples"),
        ({"data": "text=hello", "content_type": "text/plain"}, ERROR_NO_BODY),
        ({"data": "", "content_type": "application/x-www-form-urlencoded"}, ERROR_NO_BODY),
        ({"data": {"format": "csv"}}, ERROR_NO_BODY),
        ({"data": {"format": "xlsx"}, "upload": True}, "format must be"),
        ({"data": {"label_map": "spam"}, "upload": True}, "is not of the form value=label"),
        ({"data": {"encoding": "klingon"}, "upload": True}, "Unknown encoding 'klingon'"),
        ({"data": {"create_missing_labels": "perhaps"}, "upload": True}, "create_missing_labels"),
    ],
    ids=[
        "empty-examples",
        "no-examples-key",
        "json-list",
        "invalid-json",
        "infinity",
        "not-utf8",
        "example-without-text",
        "examples-not-a-list",
        "plain-text",
        "empty-form",
        "multipart-without-file",
        "bad-format",
        "bad-label-map",
        "bad-encoding",
        "bad-boolean",
    ],
)
def test_examples_import_rejects_bad_bodies(kwargs, detail, users, admin_api):
    if kwargs.pop("upload", False):
        kwargs["data"] = {**kwargs["data"], "file": _upload()}

    response = admin_api("post", "/projects/reviews/examples", **kwargs)

    assert response.status_code == 400, response.content
    assert detail in response.json()["detail"]
    assert ImportJob.objects.count() == 0


@pytest.mark.django_db
def test_examples_import_refuses_an_oversized_json_body(users, admin_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = admin_api(
        "post", "/projects/reviews/examples", data={"examples": [{"text": "x" * 2000}]}, content_type="application/json"
    )

    assert response.status_code == 413
    assert "upload a file instead" in response.json()["detail"]
    assert ImportJob.objects.count() == 0


@pytest.mark.django_db
def test_examples_import_refuses_deeply_nested_json(users, admin_api):
    body = '{"examples": [{"text": "x", "meta": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}]}"

    response = admin_api("post", "/projects/reviews/examples", data=body, content_type="application/json")

    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


@pytest.mark.django_db
def test_job_endpoint_shape(project, users, admin_api, queued_job):
    queued = admin_api("get", f"/jobs/{queued_job.pk}").json()

    assert set(queued) >= {
        "id",
        "project",
        "state",
        "progress",
        "message",
        "result",
        "errors",
        "error_count",
        "created_at",
        "started_at",
        "finished_at",
    }
    assert queued["id"] == queued_job.pk
    assert queued["project"] == "reviews"
    assert queued["state"] == "queued"
    assert queued["progress"] == 0.0
    assert queued["started_at"] is None and queued["finished_at"] is None
    assert queued["errors"] == [] and queued["error_count"] == 0

    services.import_job_run(job_id=queued_job.pk)
    done = admin_api("get", f"/jobs/{queued_job.pk}").json()

    assert done["state"] == "succeeded"
    assert done["progress"] == 1.0
    assert done["result"]["examples_created"] == 1
    assert done["message"].startswith("1 example added")
    assert done["started_at"] <= done["finished_at"]


@pytest.mark.django_db
def test_failed_job_reports_its_reason(project, users, admin_api):
    job_id = _post_examples(admin_api, [{"text": "   "}])

    services.import_job_run(job_id=job_id)
    body = admin_api("get", f"/jobs/{job_id}").json()

    assert body["state"] == "failed"
    assert body["errors"] == [{"line": 1, "reason": "empty text"}]
    assert "rejected" in body["message"]


@pytest.mark.django_db
def test_unknown_job_and_other_projects_job_are_404(users, admin_api, other_project):
    foreign = services.import_job_create(
        project=other_project,
        source=ImportSource.API,
        filename="api.jsonl",
        options=services.ImportOptions(),
        records=[{"text": "x"}],
    )

    assert admin_api("get", "/jobs/999999").status_code == 404
    assert admin_api("get", f"/jobs/{foreign.pk}").status_code == 404


@pytest.fixture
def labeled_project(project, users, admin_api) -> Project:
    job_id = _post_examples(
        admin_api,
        [
            {"text": "Buy now", "label": "spam", "observed_at": "2024-01-01T00:00:00Z", "meta": {"lang": "en"}},
            {"text": 'Nice, "quoted"\nand multi-line', "label": "ham"},
            {"text": "Unlabeled"},
        ],
    )
    services.import_job_run(job_id=job_id)
    return project


def _export(tokens: dict[str, str], fmt: str) -> Any:
    return Client().get(f"{API}/projects/reviews/export", {"format": fmt}, headers=bearer(tokens["reviewer"]))


@pytest.mark.django_db
def test_export_csv(labeled_project, tokens):
    response = _export(tokens, "csv")

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="reviews-labels.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert {(row["text"], row["label"]) for row in rows} == {
        ("Buy now", "spam"),
        ('Nice, "quoted"\nand multi-line', "ham"),
    }
    assert all(row["kind"] == "imported" for row in rows)


@pytest.mark.django_db
def test_export_jsonl(labeled_project, tokens):
    response = _export(tokens, "jsonl")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert response["Content-Disposition"] == 'attachment; filename="reviews-labels.jsonl"'
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert sorted(row["label"] for row in rows) == ["ham", "spam"]
    assert next(row for row in rows if row["label"] == "spam")["observed_at"] == "2024-01-01T00:00:00+00:00"


@pytest.mark.django_db
def test_export_labelstudio(labeled_project, tokens):
    response = _export(tokens, "labelstudio")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"] == 'attachment; filename="reviews-labels.json"'
    tasks = json.loads(b"".join(response.streaming_content))
    assert len(tasks) == 2
    spam = next(task for task in tasks if task["data"]["text"] == "Buy now")
    assert spam["data"]["lang"] == "en"
    assert spam["annotations"][0]["result"][0]["value"] == {"choices": ["spam"]}


@pytest.mark.django_db
def test_export_defaults_to_csv_and_rejects_unknown_formats(labeled_project, tokens):
    default = Client().get(f"{API}/projects/reviews/export", headers=bearer(tokens["reviewer"]))
    unknown = _export(tokens, "xlsx")

    assert default["Content-Type"].startswith("text/csv")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "detail": ERROR_EXPORT_FORMAT.format(fmt="xlsx", choices=", ".join(services.EXPORT_FORMATS))
    }


@pytest.mark.django_db
def test_openapi_schema_is_public_and_lists_every_endpoint():
    response = Client().get(f"{API}/openapi.json")

    assert response.status_code == 200
    schema = response.json()
    methods = {path: set(operations) for path, operations in schema["paths"].items()}
    assert methods["/api/v1/projects"] >= {"get", "post"}
    assert methods["/api/v1/projects/{slug}"] >= {"get"}
    assert methods["/api/v1/projects/{slug}/examples"] >= {"post"}
    assert methods["/api/v1/jobs/{job_id}"] >= {"get"}
    assert methods["/api/v1/projects/{slug}/export"] >= {"get"}
    examples = schema["paths"]["/api/v1/projects/{slug}/examples"]["post"]
    assert set(examples["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert "file" in examples["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert "examples" in examples["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "202" in examples["responses"]
    schemes = schema["components"]["securitySchemes"].values()
    assert any(scheme.get("scheme") == "bearer" for scheme in schemes)
    assert Client().get(f"{API}/docs").status_code == 200


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_api_import_runs_in_a_real_worker(project, users, celery_worker_process):
    _, raw = services.api_token_create(user=users["admin"], name="worker-test")
    client = Client()
    examples = [{"text": f"Example number {number}", "label": "spam" if number % 2 else "ham"} for number in range(25)]

    response = client.post(
        f"{API}/projects/reviews/examples",
        {"examples": examples},
        content_type="application/json",
        headers=bearer(raw),
    )
    assert response.status_code == 202, response.content
    url = response.json()["url"]

    deadline = time.monotonic() + 60
    body = client.get(url, headers=bearer(raw)).json()
    while body["state"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        body = client.get(url, headers=bearer(raw)).json()

    log = celery_worker_process.log_path.read_text(errors="replace")[-4000:]
    assert body["state"] == "succeeded", f"{body}\n{log}"
    assert body["progress"] == 1.0
    assert body["result"]["examples_created"] == 25
    assert body["result"]["annotations_created"] == 25
    assert Example.objects.filter(project=project).count() == 25
