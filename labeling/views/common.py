"""What every project page shares: the role check decorator, the page context and the 403 page."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from labeling import selectors
from labeling.models import Project, ProjectRole
from labeling.permissions import role_allows

FORBIDDEN_MESSAGE = "This page needs the {needed} role in {project}; your role there is {role}."

ProjectView = Callable[..., HttpResponse]


def page_context(request: HttpRequest, project: Project, role: str, **extra: Any) -> dict[str, Any]:
    """Return what every project page needs: the project, the role and which pages that role may open."""
    return {
        "project": project,
        "role": role,
        "role_label": ProjectRole(role).label,
        "can_review": role_allows(role, ProjectRole.REVIEWER),
        "can_admin": role_allows(role, ProjectRole.ADMIN),
        "switcher_projects": selectors.project_list_for_user(user=request.user).only("slug", "name"),
        **extra,
    }


def project_view(minimum_role: str) -> Callable[[ProjectView], ProjectView]:
    """Require login and at least `minimum_role` in the project named by `slug`; pass `project` and `role` on.

    Non-members get 404 (the project's existence is not disclosed); members with a lower role get a 403 page.
    """

    def decorator(view: ProjectView) -> ProjectView:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return _login_redirect(request)
            try:
                project, role = selectors.project_get_for_user(user=request.user, slug=slug, minimum_role=minimum_role)
            except selectors.ProjectAccessDenied:
                return _forbidden(request, slug, minimum_role)
            return view(request, *args, project=project, role=role, **kwargs)

        return wrapper

    return decorator


def _login_redirect(request: HttpRequest) -> HttpResponse:
    """Send an anonymous visitor to the login page; an htmx request (e.g. a session that expired while labeling)
    gets `HX-Redirect` so the whole page goes there instead of the login form being swapped into a fragment."""
    if not request.htmx:
        return redirect_to_login(request.get_full_path())
    # After logging in, come back to the page the fragment belongs to, not to the fragment's POST-only URL.
    page = request.headers.get("HX-Current-URL") or request.get_full_path()
    target = redirect_to_login(
        page if url_has_allowed_host_and_scheme(page, allowed_hosts={request.get_host()}) else "/"
    )
    return HttpResponse(status=204, headers={"HX-Redirect": target["Location"]})


def _forbidden(request: HttpRequest, slug: str, minimum_role: str) -> HttpResponse:
    """Render the 403 page for a member whose role is too low, keeping the project's navigation."""
    project, role = selectors.project_get_for_user(user=request.user, slug=slug, minimum_role=ProjectRole.ANNOTATOR)
    needed = ProjectRole(minimum_role).label.lower()
    message = FORBIDDEN_MESSAGE.format(needed=needed, project=project.name, role=ProjectRole(role).label.lower())
    context = page_context(request, project, role, needed=needed, message=message)
    return render(request, "labeling/forbidden.html", context, status=403)
