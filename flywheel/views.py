"""The flywheel's own page: the dashboard of labels, queue, models, LLM trust, annotators and predictions."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from labeling.models import Project, ProjectRole
from labeling.views.common import page_context, project_view

from .dashboard import DAYS_CHOICES, DAYS_DEFAULT, dashboard_get, next_steps


def _days(raw: str | None) -> int:
    """Return the window the page asked for when it is one of DAYS_CHOICES, else the default."""
    return int(raw) if raw in {str(choice) for choice in DAYS_CHOICES} else DAYS_DEFAULT


@require_GET
@project_view(ProjectRole.REVIEWER)
def dashboard(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show how the flywheel turns: what to do next, then labels, queue, models, LLM trust, people and serving.

    Reviewers and admins only: login is required, non-members get 404 and annotators the 403 page.
    """
    days = _days(request.GET.get("days"))
    board = dashboard_get(project=project, days=days)
    context = page_context(
        request,
        project,
        role,
        charts=board.charts,
        tables=board.tables,
        tiles=board.tiles,
        steps=next_steps(project, role),
        days=days,
        day_choices=DAYS_CHOICES,
    )
    return render(request, "flywheel/dashboard.html", context)
