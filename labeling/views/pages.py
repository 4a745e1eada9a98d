"""Server-rendered pages: projects, examples, review, imports with live progress, export and members."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HTMX_STOP_POLLING, push_url

from labeling import selectors, services
from labeling.importing.formats import ImportFileError
from labeling.models import AnnotationKind, ImportFormat, ImportJob, ImportSource, Project, ProjectRole
from labeling.permissions import is_global_admin

from .common import page_context, project_view

PAGE_SIZE = 50
ERROR_NO_FILE = "Choose a file to import."
ERROR_UNKNOWN_EXPORT_FORMAT = "Unknown export format {fmt!r}; use one of {choices}."


@require_GET
@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    """List the projects the user may open, with how far their labeling has come."""
    projects = selectors.project_list_with_counts_for_user(user=request.user)
    context = {"projects": projects, "is_global_admin": is_global_admin(request.user)}
    return render(request, "labeling/project_list.html", context)


@require_GET
@project_view(ProjectRole.ANNOTATOR)
def project_overview(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show what to do next, the project's labels, counts and recent imports, with links to what the role allows."""
    # Imported here: the labeling room never imports the flywheel (nor, through it, models_app) at load time.
    from flywheel.dashboard import next_steps

    context = page_context(
        request,
        project,
        role,
        steps=next_steps(project, role),
        counts=selectors.project_counts(project=project),
        labels=selectors.label_list_with_counts(project=project),
        jobs=selectors.import_job_list(project=project, limit=5),
        export_formats=services.EXPORT_FORMATS,
    )
    return render(request, "labeling/project_overview.html", context)


@require_GET
@project_view(ProjectRole.ANNOTATOR)
def example_browse(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Page through the examples, searched by text and filtered by whether they carry a label."""
    search = request.GET.get("q", "").strip()[:200]
    labeled = request.GET.get("labeled", "")
    examples = selectors.example_list(project=project, search=search, labeled=labeled)
    page = Paginator(examples, PAGE_SIZE).get_page(request.GET.get("page"))
    context = page_context(request, project, role, page=page, search=search, labeled=labeled)
    template = "labeling/examples.html#results" if request.htmx else "labeling/examples.html"
    return render(request, template, context)


@require_GET
@project_view(ProjectRole.REVIEWER)
def annotation_review(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Page through the annotations, newest first, filtered by who or what made them."""
    kind = request.GET.get("kind", "")
    if kind not in AnnotationKind.values:
        kind = ""
    page = Paginator(selectors.annotation_list(project=project, kind=kind), PAGE_SIZE).get_page(request.GET.get("page"))
    context = page_context(request, project, role, page=page, kind=kind, kinds=AnnotationKind.choices)
    template = "labeling/review.html#results" if request.htmx else "labeling/review.html"
    return render(request, template, context)


class ImportUploadForm(forms.Form):
    """The upload page's fields; option values are checked again by `ImportOptions`."""

    file = forms.FileField(error_messages={"required": ERROR_NO_FILE})
    format = forms.ChoiceField(choices=ImportFormat.choices, initial=ImportFormat.AUTO, required=False)
    text_field = forms.CharField(required=False, max_length=200)
    time_field = forms.CharField(required=False, max_length=200)
    label_field = forms.CharField(required=False, max_length=200)
    label_map = forms.CharField(required=False, max_length=5000)
    create_missing_labels = forms.BooleanField(required=False)
    unescape_html = forms.BooleanField(required=False)
    ignore_labels = forms.BooleanField(required=False)
    encoding = forms.CharField(required=False, max_length=40, initial="utf-8")


def _import_form_response(
    request: HttpRequest, project: Project, role: str, form: ImportUploadForm, status: int = 200
) -> HttpResponse:
    context = page_context(
        request,
        project,
        role,
        form=form,
        formats=ImportFormat.choices,
        max_bytes=settings.FLYWHEEL_IMPORT_MAX_BYTES,
        max_text_chars=settings.FLYWHEEL_IMPORT_MAX_TEXT_CHARS,
    )
    template = "labeling/import.html#form" if request.htmx else "labeling/import.html"
    return render(request, template, context, status=status)


@require_http_methods(["GET", "POST"])
@project_view(ProjectRole.ADMIN)
def import_upload(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show the upload form, or store the uploaded file and queue its import job."""
    if request.method == "GET":
        return _import_form_response(request, project, role, ImportUploadForm())
    form = ImportUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _import_form_response(request, project, role, form, status=400)
    data = form.cleaned_data
    try:
        options = services.ImportOptions.from_dict(
            {
                **{key: value for key, value in data.items() if key != "file"},
                "label_map": services.parse_label_map(data["label_map"]),
            }
        )
    except ImportFileError as exc:
        form.add_error(None, str(exc))
        return _import_form_response(request, project, role, form, status=400)
    upload = data["file"]
    job = services.import_job_create(
        project=project,
        source=ImportSource.UPLOAD,
        filename=upload.name,
        options=options,
        created_by=request.user,
        upload=upload,
    )
    services.import_job_enqueue(job=job)
    messages.success(request, f"{job.filename} was uploaded and queued for import.")
    url = reverse("labeling:import_job", kwargs={"slug": project.slug, "job_id": job.pk})
    if request.htmx:
        response = render(request, "labeling/import_job.html", _job_context(request, project, role, job))
        return push_url(response, url)
    return redirect(url)


@require_GET
@project_view(ProjectRole.ADMIN)
def import_job(request: HttpRequest, *, project: Project, role: str, job_id: int) -> HttpResponse:
    """Show an import's progress and outcome; the htmx poll gets the status partial, 286 once finished."""
    job = selectors.import_job_get(project=project, job_id=job_id)
    context = _job_context(request, project, role, job)
    if request.htmx:
        status = HTMX_STOP_POLLING if job.is_finished else 200
        return render(request, "labeling/import_job.html#status", context, status=status)
    return render(request, "labeling/import_job.html", context)


def _job_context(request: HttpRequest, project: Project, role: str, job: ImportJob) -> dict[str, Any]:
    """Return the job page's context: the job, its percentage, its counts and the first problems found."""
    result = job.result or {}
    errors = job.errors or []
    warnings = result.get("warnings") or []
    return page_context(
        request,
        project,
        role,
        job=job,
        percent=round(job.progress * 100),
        counts=[
            ("Rows read", result.get("rows_read", 0), ""),
            ("Examples added", result.get("examples_created", 0), "good"),
            ("Already present", result.get("duplicates", 0), ""),
            ("Labels stored", result.get("annotations_created", 0), ""),
            ("Rows rejected", result.get("rows_rejected", 0), "bad"),
            ("Without timestamp", result.get("rows_without_timestamp", 0), "warn"),
        ],
        errors_shown=errors[:50],
        warnings_shown=warnings[:50],
        warnings_total=result.get("rows_without_timestamp", len(warnings)),
    )


@require_GET
@project_view(ProjectRole.ADMIN)
def import_report(request: HttpRequest, *, project: Project, role: str, job_id: int) -> FileResponse:
    """Download the CSV of every rejected row; the path comes from the job row, never from the request."""
    job = selectors.import_job_get(project=project, job_id=job_id)
    path = Path(job.report_path) if job.report_path else None
    if path is None or not path.is_file():
        raise Http404("This import has no rejected-rows report.")
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=f"{project.slug}-import-{job.pk}-rejected.csv",
        content_type="text/csv",
    )


@require_GET
@project_view(ProjectRole.REVIEWER)
def project_export(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Stream every annotation of the project as CSV, JSON Lines or a Label Studio task list."""
    fmt = request.GET.get("format", "csv")
    if fmt not in services.EXPORT_FORMATS:
        message = ERROR_UNKNOWN_EXPORT_FORMAT.format(fmt=fmt[:40], choices=", ".join(services.EXPORT_FORMATS))
        return render(
            request, "labeling/problem.html", page_context(request, project, role, message=message), status=400
        )
    content_type, extension = services.EXPORT_FORMATS[fmt]
    response = StreamingHttpResponse(services.export_stream(project=project, fmt=fmt), content_type=content_type)
    response["Content-Disposition"] = f"attachment; filename={project.slug}-labels.{extension}"
    return response


@require_GET
@project_view(ProjectRole.ADMIN)
def member_list(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """List the project's members and their roles, with the command that adds one."""
    context = page_context(request, project, role, members=selectors.member_list(project=project))
    return render(request, "labeling/members.html", context)
