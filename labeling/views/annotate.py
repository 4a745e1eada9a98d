"""The annotate page: one claimed item at a time, one key and one round trip per label, nothing lost.

Every htmx action (label, skip, undo) answers with the next card partial, the message for the page's
live region as an out-of-band swap, and the counters as an `HX-Trigger` event. A plain form post
(no JavaScript) redirects back to the page (303) with the message in Django's messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HTMX_STOP_POLLING, trigger_client_event

from labeling import selectors, services
from labeling.models import (
    Project,
    ProjectRole,
)
from labeling.project_settings import labeling_settings_get

from .common import page_context, project_view

PROGRESS_EVENT = "flywheel:progress"
NOTE_SAVED = "Saved ‘{label}’."
NOTE_UNDONE = "Undid your label ‘{label}’ — choose again."
NOTE_UNDONE_ELSEWHERE = "Undid your label ‘{label}’."
NOTE_SKIPPED = "Skipped; it comes back after everything else."
NOTE_LEASE_LAPSED = "This item's reservation lapsed; reload for a new one."
ERROR_UNKNOWN_EXAMPLE = "That example is not in this project; here is your current item instead."
# The keys that skip and undo, unless a label's shortcut takes them.
SKIP_KEY = "s"
UNDO_KEY = "u"
# A plain form post carries its note to the page in Django's messages, at the matching level.
_MESSAGE_LEVELS = {
    "info": messages.INFO,
    "success": messages.SUCCESS,
    "warn": messages.WARNING,
    "error": messages.ERROR,
}


@dataclass(frozen=True)
class Note:
    """A message for the page's live region; `tone` is info, success, warn or error."""

    text: str
    tone: str = "info"


@require_GET
@project_view(ProjectRole.ANNOTATOR)
def annotate(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Claim the next item for the user (or hand back the one they hold) and show it."""
    return _card_response(request, project, role)


@require_POST
@project_view(ProjectRole.ANNOTATOR)
def annotate_submit(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Record the chosen label under the item's lease and answer with the next item."""
    example_id = _int_or_none(request.POST.get("example_id", ""))
    example = selectors.example_get(project=project, example_id=example_id) if example_id is not None else None
    if example is None:
        return _after_action(request, project, role, note=Note(ERROR_UNKNOWN_EXAMPLE, "error"))
    try:
        submitted = services.annotation_submit(
            user=request.user,
            example=example,
            label=request.POST.get("label", ""),
            lease_id=request.POST.get("lease_id", ""),
        )
    except services.AnnotationError as exc:
        return _after_action(request, project, role, note=Note(str(exc), "error"))
    annotation = submitted.annotation
    note = Note(NOTE_SAVED.format(label=annotation.label.name), "success")
    return _after_action(request, project, role, note=note, last_annotation_id=annotation.pk)


@require_POST
@project_view(ProjectRole.ANNOTATOR)
def annotate_skip(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Give the item back (it returns last, for this user only) and answer with the next one."""
    try:
        services.queue_release(user=request.user, lease_id=request.POST.get("lease_id", ""))
    except services.LeaseError:
        return _after_action(request, project, role, note=Note(NOTE_LEASE_LAPSED, "warn"))
    return _after_action(request, project, role, note=Note(NOTE_SKIPPED))


@require_POST
@project_view(ProjectRole.ANNOTATOR)
def annotate_undo(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Withdraw the label named by the card (else the user's last) and show its item again.

    Undoing an already withdrawn label changes nothing, so a double-pressed undo is harmless.
    """
    annotation_id = _int_or_none(request.POST.get("annotation_id", ""))
    try:
        annotation, item = services.annotation_undo(
            user=request.user, project_id=project.pk, annotation_id=annotation_id
        )
    except services.AnnotationError as exc:
        tone = "info" if annotation_id is None else "error"
        return _after_action(request, project, role, note=Note(str(exc), tone))
    template = NOTE_UNDONE if item is not None else NOTE_UNDONE_ELSEWHERE
    note = Note(template.format(label=annotation.label.name), "info")
    return _after_action(request, project, role, note=note, last_annotation_id=annotation.pk)


@require_POST
@project_view(ProjectRole.ANNOTATOR)
def annotate_heartbeat(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Keep the open card's lease alive (204); once it is gone, stop polling (286) and say so."""
    try:
        services.queue_lease_extend(user=request.user, lease_id=request.POST.get("lease_id", ""))
    except services.LeaseError:
        context = {"project": project, "note": Note(NOTE_LEASE_LAPSED, "warn"), "lapsed": True}
        return render(request, "labeling/annotate.html#status_oob", context, status=HTMX_STOP_POLLING)
    return HttpResponse(status=204)


def _after_action(
    request: HttpRequest, project: Project, role: str, *, note: Note, last_annotation_id: int | None = None
) -> HttpResponse:
    """Answer a POST: the next card for htmx, else a redirect to the page (post/redirect/get)."""
    if request.htmx:
        return _card_response(request, project, role, note=note, last_annotation_id=last_annotation_id)
    messages.add_message(request, _MESSAGE_LEVELS[note.tone], note.text)
    return HttpResponseRedirect(reverse("labeling:annotate", kwargs={"slug": project.slug}), status=303)


def _card_response(
    request: HttpRequest,
    project: Project,
    role: str,
    *,
    note: Note | None = None,
    last_annotation_id: int | None = None,
) -> HttpResponse:
    """Claim the user's next item and render it: the whole page, or the card partial for htmx."""
    claim = services.queue_claim_next(project=project, user=request.user)
    item = claim.item if claim is not None else None
    labels = selectors.queue_item_labels(project=project)
    taken = {label.key.lower() for label in labels}
    progress = _progress(project=project, user=request.user)
    suggestion = (
        selectors.queue_item_suggestion_get(item=item)
        if item and labeling_settings_get(project).show_suggestions
        else None
    )
    context = page_context(
        request,
        project,
        role,
        item=item,
        labels=labels,
        suggestion=suggestion,
        note=note,
        last_annotation_id=last_annotation_id,
        progress=progress,
        skip_key=SKIP_KEY if SKIP_KEY not in taken else "",
        undo_key=UNDO_KEY if UNDO_KEY not in taken else "",
        oob=bool(request.htmx),
    )
    if request.htmx:
        response = render(request, "labeling/annotate.html#card", context)
        return trigger_client_event(response, PROGRESS_EVENT, progress)
    return render(request, "labeling/annotate.html", context)


def _progress(*, project: Project, user: Any) -> dict[str, int]:
    """Return the counters shown outside the card: slots done of total, percent, and the user's labels today."""
    queue = selectors.queue_progress(project=project)
    total = queue["total"]
    return {
        "done": queue["done"],
        "total": total,
        "remaining": queue["remaining"],
        "percent": round(queue["done"] * 100 / total) if total else 0,
        "today": selectors.annotation_count_today(project=project, user=user),
    }


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
