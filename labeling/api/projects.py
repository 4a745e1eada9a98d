"""Projects, example imports, import jobs and exports in the JSON API.

Every operation authenticates with a bearer token or a logged-in browser session (see `api_auth`)
and checks the caller's project role through `selectors.project_get_for_user`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from ninja import Field, Query, Router, Schema, Status
from pydantic import ValidationError as PydanticValidationError

from labeling import selectors, services
from labeling.importing.formats import ImportFileError, normalize_encoding
from labeling.models import ImportFormat, ImportJob, ImportSource, Label, Project, ProjectRole
from labeling.permissions import is_global_admin
from labeling.services.projects import ERROR_SLUG_TAKEN

ERROR_NOT_GLOBAL_ADMIN = "Only global admins (superusers or members of the admin group) create projects."
ERROR_NO_BODY = (
    "Send either a multipart/form-data upload with a `file` field, "
    'or a JSON body {"examples": [{"text": ..., "observed_at": ..., "label": ..., "meta": {...}}]}.'
)
ERROR_NO_EXAMPLES = "No examples: `examples` must list at least one example."
ERROR_BAD_JSON = "The body is not valid JSON: {reason}."
ERROR_BODY_TOO_LARGE = "The body is over the limit of {limit:,} bytes; upload a file instead."
ERROR_EXPORT_FORMAT = "Unknown export format {fmt!r}; use one of {choices}."
RESERVED_EXAMPLE_KEYS = ("text", "observed_at", "label")


router = Router(tags=["projects"])


class ErrorOut(Schema):
    detail: str


class LabelIn(Schema):
    name: str
    description: str = ""


class ProjectIn(Schema):
    slug: str
    name: str
    description: str = ""
    labels: list[LabelIn] = Field(default_factory=list)


class LabelOut(Schema):
    name: str
    description: str
    shortcut: str
    order: int
    parent: str | None = None


class ProjectOut(Schema):
    slug: str
    name: str
    description: str
    labels: list[LabelOut]


class CountsOut(Schema):
    examples: int
    labeled: int
    queued: int


class ProjectDetailOut(ProjectOut):
    counts: CountsOut
    role: str


class ExampleIn(Schema):
    text: str
    observed_at: str | int | float | None = None
    label: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class ExamplesIn(Schema):
    examples: list[ExampleIn]
    create_missing_labels: bool = False
    unescape_html: bool = False


class UploadOptionsIn(Schema):
    """The form fields that may accompany a multipart upload."""

    format: str = Field(
        ImportFormat.AUTO.value,
        description="auto, csv, jsonl or labelstudio.",
        json_schema_extra={"enum": ImportFormat.values},
    )
    text_field: str | None = Field(None, description="Column holding the text (default: text, content, body, …).")
    time_field: str | None = Field(None, description="Column holding the source time (default: observed_at, …).")
    label_field: str | None = Field(None, description="Column holding an existing label (default: label, class, …).")
    label_map: str = Field("", description="Values in the file mapped to label names, e.g. `1=spam,0=ham`.")
    create_missing_labels: bool = False
    unescape_html: bool = False
    ignore_labels: bool = Field(False, description="Import the text only; every new example is queued for labeling.")
    encoding: str = "utf-8"


class JobQueuedOut(Schema):
    job_id: int
    state: str
    url: str


class JobErrorOut(Schema):
    line: int | None = None
    reason: str


class JobOut(Schema):
    id: int
    project: str
    state: str
    progress: float
    message: str
    result: dict[str, Any]
    errors: list[JobErrorOut]
    error_count: int
    source: str
    filename: str
    format: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def _inline_schema(model: type[Schema]) -> dict[str, Any]:
    """Return a model's JSON schema with nested definitions inlined, for use inside `openapi_extra`."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def _upload_schema() -> dict[str, Any]:
    schema = _inline_schema(UploadOptionsIn)
    schema["properties"] = {"file": {"type": "string", "format": "binary"}, **schema["properties"]}
    schema["required"] = ["file"]
    return schema


def _label_out(label: Label) -> dict[str, Any]:
    return {
        "name": label.name,
        "description": label.description,
        "shortcut": label.shortcut,
        "order": label.order,
        "parent": label.parent.name if label.parent_id else None,
    }


def _project_out(project: Project, labels: Any) -> dict[str, Any]:
    return {
        "slug": project.slug,
        "name": project.name,
        "description": project.description,
        "labels": [_label_out(label) for label in labels],
    }


def _project_detail_out(project: Project, role: str) -> dict[str, Any]:
    return {
        **_project_out(project, selectors.label_list(project=project)),
        "counts": selectors.project_counts(project=project),
        "role": str(role),
    }


def _job_out(job: ImportJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "project": job.project.slug,
        "state": job.state,
        "progress": job.progress,
        "message": job.message,
        "result": job.result,
        "errors": job.errors,
        "error_count": job.error_count,
        "source": job.source,
        "filename": job.filename,
        "format": job.format,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _validation_detail(exc: PydanticValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "Invalid body: " + "; ".join(parts) + "."


class _BadRequest(Exception):
    """A request body that cannot become an import job; carries the status and message to answer with."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


@router.get("/projects", response=list[ProjectOut], summary="List the projects visible to the caller")
def project_list(request: HttpRequest) -> list[dict[str, Any]]:
    """List the caller's projects (all of them for global admins) with their labels."""
    projects = selectors.project_list_with_labels_for_user(user=request.auth)
    return [_project_out(project, project.labels.all()) for project in projects]


@router.post(
    "/projects",
    response={201: ProjectDetailOut, 400: ErrorOut, 403: ErrorOut, 409: ErrorOut},
    summary="Create a project with its labels (global admins only)",
)
def project_create(request: HttpRequest, payload: ProjectIn) -> Status[dict[str, Any]]:
    """Create a project; the caller need not become a member since global admins see every project."""
    if not is_global_admin(request.auth):
        return Status(403, {"detail": ERROR_NOT_GLOBAL_ADMIN})
    try:
        project = services.project_create(
            slug=payload.slug,
            name=payload.name,
            description=payload.description,
            labels=[label.model_dump() for label in payload.labels],
            created_by=request.auth,
        )
    except services.ProjectError as exc:
        status = 409 if str(exc) == ERROR_SLUG_TAKEN.format(slug=payload.slug.strip()) else 400
        return Status(status, {"detail": str(exc)})
    return Status(201, _project_detail_out(project, ProjectRole.ADMIN))


@router.get(
    "/projects/{slug}",
    response={200: ProjectDetailOut, 403: ErrorOut, 404: ErrorOut},
    summary="Show a project: labels, counts and the caller's role",
)
def project_detail(request: HttpRequest, slug: str) -> dict[str, Any]:
    """Show a project to any of its members."""
    project, role = selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.ANNOTATOR)
    return _project_detail_out(project, role)


@router.post(
    "/projects/{slug}/examples",
    response={202: JobQueuedOut, 400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 413: ErrorOut},
    summary="Queue an import of examples from an uploaded file or a JSON list (project admins)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _upload_schema()},
                "application/json": {"schema": _inline_schema(ExamplesIn)},
            },
        }
    },
)
def examples_import(request: HttpRequest, slug: str) -> Status[dict[str, Any]]:
    """Store the examples as an import job and queue it; poll the returned job URL for progress."""
    project, _ = selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.ADMIN)
    try:
        if request.content_type == "multipart/form-data":
            job = _job_from_upload(request, project)
        elif request.content_type == "application/json" or request.content_type.endswith("+json"):
            job = _job_from_json(request, project)
        else:
            return Status(400, {"detail": ERROR_NO_BODY})
    except _BadRequest as exc:
        return Status(exc.status, {"detail": exc.detail})
    services.import_job_enqueue(job=job)
    url = reverse("api:job_detail", kwargs={"job_id": job.pk})
    return Status(202, {"job_id": job.pk, "state": job.state, "url": url})


def _job_from_upload(request: HttpRequest, project: Project) -> ImportJob:
    upload = request.FILES.get("file")
    if upload is None:
        raise _BadRequest(ERROR_NO_BODY)
    try:
        form = UploadOptionsIn.model_validate({key: value for key, value in request.POST.items() if value != ""})
    except PydanticValidationError as exc:
        raise _BadRequest(_validation_detail(exc)) from exc
    try:
        options = services.ImportOptions.from_dict(
            {**form.model_dump(), "label_map": services.parse_label_map(form.label_map)}
        )
        normalize_encoding(options.encoding)
    except ImportFileError as exc:
        raise _BadRequest(str(exc)) from exc
    return services.import_job_create(
        project=project,
        source=ImportSource.API,
        filename=upload.name or "upload",
        options=options,
        created_by=request.auth,
        upload=upload,
    )


def _reject_constant(name: str) -> Any:
    """Refuse NaN and Infinity, which Python's parser accepts but JSON (and the database) does not."""
    raise ValueError(f"{name} is not a JSON value")


def _job_from_json(request: HttpRequest, project: Project) -> ImportJob:
    try:
        data = json.loads(request.body or b"null", parse_constant=_reject_constant)
    except RequestDataTooBig as exc:
        raise _BadRequest(ERROR_BODY_TOO_LARGE.format(limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE), 413) from exc
    except (ValueError, RecursionError) as exc:
        reason = getattr(exc, "msg", None) or ("nested too deeply" if isinstance(exc, RecursionError) else str(exc))
        raise _BadRequest(ERROR_BAD_JSON.format(reason=reason)) from exc
    if not isinstance(data, dict) or "examples" not in data:
        raise _BadRequest(ERROR_NO_BODY)
    try:
        body = ExamplesIn.model_validate(data)
    except PydanticValidationError as exc:
        raise _BadRequest(_validation_detail(exc)) from exc
    if not body.examples:
        raise _BadRequest(ERROR_NO_EXAMPLES)
    records = [_example_record(example) for example in body.examples]
    options = services.ImportOptions(
        format=ImportFormat.JSONL,
        text_field="text",
        time_field="observed_at",
        label_field="label",
        create_missing_labels=body.create_missing_labels,
        unescape_html=body.unescape_html,
    )
    return services.import_job_create(
        project=project,
        source=ImportSource.API,
        filename="api.jsonl",
        options=options,
        created_by=request.auth,
        records=records,
    )


def _example_record(example: ExampleIn) -> dict[str, Any]:
    """Flatten one example into a JSON Lines record; meta keys become the example's meta on import.

    Every record names text, observed_at and label (null when absent) so the importer's field map holds.
    """
    record = {key: value for key, value in example.meta.items() if key not in RESERVED_EXAMPLE_KEYS}
    record.update(text=example.text, observed_at=example.observed_at, label=example.label)
    return record


def import_job_detail(request: HttpRequest, job_id: int) -> dict[str, Any]:
    """Show an import job to the admins of its project (served at /api/v1/jobs/{id} with the other job kinds)."""
    job = selectors.import_job_get_for_user(user=request.auth, job_id=job_id, minimum_role=ProjectRole.ADMIN)
    return _job_out(job)


@router.get(
    "/projects/{slug}/export",
    response={400: ErrorOut, 403: ErrorOut, 404: ErrorOut},
    summary="Stream a project's labels as CSV, JSON Lines or a Label Studio task list (reviewers)",
    openapi_extra={
        "responses": {
            "200": {
                "description": "The export, streamed.",
                "content": {content_type: {} for content_type, _ in services.EXPORT_FORMATS.values()},
            }
        }
    },
)
def project_export(
    request: HttpRequest,
    slug: str,
    fmt: str = Query("csv", alias="format", description="csv, jsonl or labelstudio."),
) -> Any:
    """Stream every annotation of the project in the chosen format, in constant memory."""
    project, _ = selectors.project_get_for_user(user=request.auth, slug=slug, minimum_role=ProjectRole.REVIEWER)
    if fmt not in services.EXPORT_FORMATS:
        return Status(400, {"detail": ERROR_EXPORT_FORMAT.format(fmt=fmt, choices=", ".join(services.EXPORT_FORMATS))})
    content_type, extension = services.EXPORT_FORMATS[fmt]
    response = StreamingHttpResponse(
        services.export_stream(project=project, fmt=fmt), content_type=f"{content_type}; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-labels.{extension}"'
    return response
