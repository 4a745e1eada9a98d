"""The JSON API under /api/v1/, with its OpenAPI schema at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError

from labeling.api import api_auth
from labeling.api import router as labeling_router
from labeling.api.projects import JobOut, import_job_detail
from labeling.selectors import ProjectAccessDenied
from models_app.api import (
    PRELABEL_JOB_PREFIX,
    QUEUE_JOB_PREFIX,
    TRAINING_JOB_PREFIX,
    PrelabelJobOut,
    QueueBuildJobOut,
    TrainingJobOut,
    prelabel_job_detail,
    queue_job_detail,
    training_job_detail,
)
from models_app.api import router as models_router
from models_app.api_rules import router as rules_router
from models_app.api_serving import router as serving_router

ERROR_UNAUTHENTICATED = "Authentication required: send `Authorization: Bearer <token>` or log in."

api = NinjaAPI(
    title="Flywheel API",
    version="1",
    description="Projects, example imports, jobs, exports, the labeling queue, retraining, model versions, "
    "publishing and predictions. "
    "Authenticate with `Authorization: Bearer <token>` (see `manage.py create_api_token`) or a browser session.",
    urls_namespace="api",
    auth=api_auth(),
)
api.add_router("/", labeling_router)
api.add_router("/", models_router)
api.add_router("/", serving_router)
api.add_router("/", rules_router)

IMPORT_JOB_PREFIX = "import-"
ERROR_BAD_JOB_ID = (
    "No such job: job ids are numbers (imports), train-<number> (training runs), queue-<number> (queue rebuilds) "
    "or prelabel-<number> (pre-labeling)."
)


class JobErrorOut(Schema):
    detail: str


@api.get(
    "/jobs/{job_id}",
    response={200: JobOut | TrainingJobOut | QueueBuildJobOut | PrelabelJobOut, 403: JobErrorOut, 404: JobErrorOut},
    summary="Follow a job: an import (project admins), a training run train-<n>, a queue rebuild queue-<n> "
    "or pre-labeling prelabel-<n> (reviewers)",
    tags=["jobs"],
)
def job_detail(request: HttpRequest, job_id: str) -> dict[str, Any]:
    """Show a job's state, progress and message; the id's form says which kind of job it is."""
    key = job_id.strip()
    if key.startswith(TRAINING_JOB_PREFIX) and key[len(TRAINING_JOB_PREFIX) :].isdigit():
        return training_job_detail(request, int(key[len(TRAINING_JOB_PREFIX) :]))
    if key.startswith(QUEUE_JOB_PREFIX) and key[len(QUEUE_JOB_PREFIX) :].isdigit():
        return queue_job_detail(request, int(key[len(QUEUE_JOB_PREFIX) :]))
    if key.startswith(PRELABEL_JOB_PREFIX) and key[len(PRELABEL_JOB_PREFIX) :].isdigit():
        return prelabel_job_detail(request, int(key[len(PRELABEL_JOB_PREFIX) :]))
    key = key.removeprefix(IMPORT_JOB_PREFIX)
    if key.isdigit():
        return import_job_detail(request, int(key))
    raise Http404(ERROR_BAD_JOB_ID)


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    """Answer 401 with a hint on how to authenticate."""
    response = api.create_response(request, {"detail": ERROR_UNAUTHENTICATED}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="flywheel"'
    return response


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    """Answer 404 for unknown objects and for projects the caller is not a member of, alike."""
    return api.create_response(request, {"detail": str(exc) or "Not found."}, status=404)


@api.exception_handler(ProjectAccessDenied)
def access_denied(request: HttpRequest, exc: ProjectAccessDenied) -> HttpResponse:
    """Answer 403 when a member's role is too low for the operation."""
    return api.create_response(request, {"detail": str(exc)}, status=403)
