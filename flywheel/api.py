"""The JSON API under /api/v1/, with its OpenAPI schema at /api/v1/openapi.json."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError

from labeling.api import api_auth
from labeling.api import router as labeling_router
from labeling.selectors import ProjectAccessDenied

ERROR_UNAUTHENTICATED = "Authentication required: send `Authorization: Bearer <token>` or log in."

api = NinjaAPI(
    title="Flywheel API",
    version="1",
    description="Projects, example imports, import jobs and exports. "
    "Authenticate with `Authorization: Bearer <token>` (see `manage.py create_api_token`) or a browser session.",
    urls_namespace="api",
    auth=api_auth(),
)
api.add_router("/", labeling_router)


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
