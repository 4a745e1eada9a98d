"""The LLM review desk: reviewers filter the LLM's pending labels, then accept, reject or correct them, in bulk or one
by one, with the mouse, the keyboard or plain forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from labeling import selectors, services
from labeling.models import Project, ProjectRole
from labeling.selectors.llm_labels import AGREEMENT_CHOICES, ORDER_CHOICES, STATUS_CHOICES
from labeling.services.llm_labels import REVIEW_ACTIONS

from .common import page_context, project_view

PAGE_SIZE = 50
TEXT_SHOWN = 280
PROBABILITIES_SHOWN = 3
SKIPPED_SHOWN = 20
# Sent with every answer to an action, so anything else on the page can follow the desk.
REVIEWED_EVENT = "llm-labels-reviewed"

ORDER_NAMES = {
    "-confidence": "Most confident first",
    "confidence": "Least confident first",
    "-id": "Newest first",
    "id": "Oldest first",
}
AGREEMENT_NAMES = {
    "agree": "LLM and model agree",
    "disagree": "LLM and model disagree",
    "unknown": "No model prediction",
}
ACTION_DONE = {"accept": "Accepted", "reject": "Rejected"}

ERROR_CONFIDENCE = "{name} must be a number from 0 to 1."
ERROR_CONFIDENCE_ORDER = "min_confidence must not be above max_confidence."
ERROR_IDS = "LLM label ids must be whole numbers; reload the page and try again."
ERROR_NOTHING_SELECTED = "Select some LLM labels first: tick their boxes, or use a row's own buttons."
ERROR_CHOOSE_LABEL = "Choose the right label for LLM label {id} before pressing Correct."
MESSAGE_REVIEWED = "{action} {count} LLM label{s}."
MESSAGE_SKIPPED = "Skipped {count}:"
MESSAGE_SKIPPED_MORE = "…and {count} more."
MESSAGE_CORRECTED = "LLM label {id} rejected; example {example_id} now has your label {label}."


@dataclass(frozen=True)
class Notice:
    """What an action did, for the alert above the table: a sentence, and each skipped id's reason."""

    level: str
    text: str
    skipped: tuple[str, ...] = ()


def _plural(count: int) -> str:
    return "" if count == 1 else "s"


def _filters(query: QueryDict) -> tuple[dict[str, Any], dict[str, str], str]:
    """Read the filter bar from the query string: (selector arguments, the values to show, an error or "")."""
    values = {
        "status": query.get("status", "pending"),
        "label": query.get("label", ""),
        "labeler": query.get("labeler", ""),
        "min_confidence": query.get("min_confidence", "").strip(),
        "max_confidence": query.get("max_confidence", "").strip(),
        "agreement": query.get("agreement", ""),
        "order": query.get("order", "") or "-confidence",
    }
    arguments: dict[str, Any] = {
        "status": values["status"] or None,
        "label": values["label"] or None,
        "labeler": values["labeler"] or None,
        "agreement": values["agreement"] or None,
        "order": values["order"],
    }
    for name in ("min_confidence", "max_confidence"):
        raw = values[name]
        if not raw:
            arguments[name] = None
            continue
        try:
            number = float(raw)
        except ValueError:
            return arguments, values, ERROR_CONFIDENCE.format(name=name)
        if not 0.0 <= number <= 1.0:
            return arguments, values, ERROR_CONFIDENCE.format(name=name)
        arguments[name] = number
    if None not in (arguments["min_confidence"], arguments["max_confidence"]) and (
        arguments["min_confidence"] > arguments["max_confidence"]
    ):
        return arguments, values, ERROR_CONFIDENCE_ORDER
    return arguments, values, ""


def _desk_context(request: HttpRequest, project: Project, **extra: Any) -> dict[str, Any]:
    """The filter bar, the counts and one page of rows, for the page and for the table partial."""
    arguments, values, error = _filters(request.GET)
    rows: Any = []
    if not error:
        try:
            rows = selectors.llm_label_list(project=project, **arguments)
        except ValueError as exc:
            error = str(exc)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    labels = list(selectors.label_list(project=project))
    return {
        "page": page,
        "rows": [_row(annotation) for annotation in page.object_list],
        "filters": values,
        "filtered": any(values[name] for name in ("label", "labeler", "min_confidence", "max_confidence", "agreement"))
        or values["status"] != "pending",
        "filter_error": error,
        "counts": _counts(project),
        "labels": labels,
        "keyed_labels": labels[:9],
        "labelers": selectors.llm_labelers(project=project),
        "status_choices": STATUS_CHOICES,
        "agreement_choices": [(value, AGREEMENT_NAMES[value]) for value in AGREEMENT_CHOICES],
        "order_choices": [(value, ORDER_NAMES[value]) for value in ORDER_CHOICES],
        "act_url": _with_query(reverse("labeling:llm_review_act", kwargs={"slug": project.slug}), request.GET),
        "desk_url": reverse("labeling:llm_review", kwargs={"slug": project.slug}),
        **extra,
    }


def _with_query(url: str, query: QueryDict) -> str:
    """Keep the desk's filters and page on a URL, so an action comes back to the same view of the desk."""
    encoded = query.urlencode()
    return f"{url}?{encoded}" if encoded else url


def _counts(project: Project) -> dict[str, int]:
    counts = selectors.llm_label_counts(project=project)
    return {
        name: counts.get(name, 0) for name in ("pending", "accepted", "rejected", "auto_accepted", "disagree_pending")
    }


def _row(annotation: Any) -> dict[str, Any]:
    """Arrange one LLM label for its table row: the text, the LLM's and the model's view, and whether they agree."""
    probabilities = sorted((annotation.probabilities or {}).items(), key=lambda item: -item[1])
    confidence = annotation.confidence
    text = annotation.example.text
    if annotation.model_label_id is None:
        agreement = "unknown"
    else:
        agreement = "agree" if annotation.model_label_id == annotation.label_id else "disagree"
    return {
        "annotation": annotation,
        "text": text,
        "long": len(text) > TEXT_SHOWN,
        "confidence_percent": round(confidence * 100) if confidence is not None else None,
        "probabilities": [(name, value) for name, value in probabilities[:PROBABILITIES_SHOWN]],
        "probabilities_title": " · ".join(f"{name} {value:.3f}" for name, value in probabilities),
        "probabilities_more": max(len(probabilities) - PROBABILITIES_SHOWN, 0),
        "agreement": agreement,
        "pending": annotation.status == "pending",
    }


@require_GET
@project_view(ProjectRole.REVIEWER)
def llm_review(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show the LLM's labels by the filters in the URL (pending by default) with a way to review each.

    htmx (the filter bar, the pages) gets only the table.
    """
    context = page_context(request, project, role, **_desk_context(request, project))
    if request.htmx:
        return render(request, "labeling/llm_review.html#results", context)
    status = 400 if context["filter_error"] else 200
    return render(request, "labeling/llm_review.html", context, status=status)


@require_POST
@project_view(ProjectRole.REVIEWER)
def llm_review_act(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Accept or reject the posted `ids` by `action`, or correct `id` to `label` (the reviewer's own label).

    The query string carries the desk's filters: htmx gets the refreshed table under them with a notice, a plain
    form post is redirected back to the desk (303) with the notice as a message.
    """
    notice = _act(request, project)
    if request.htmx:
        context = page_context(request, project, role, **_desk_context(request, project, notice=notice))
        response = render(request, "labeling/llm_review.html#acted", context)
        return trigger_client_event(response, REVIEWED_EVENT, {"level": notice.level})
    add = {"success": messages.success, "warning": messages.warning, "error": messages.error}[notice.level]
    add(request, " ".join((notice.text, *notice.skipped)))
    url = _with_query(reverse("labeling:llm_review", kwargs={"slug": project.slug}), request.GET)
    return HttpResponseRedirect(url, status=303)


def _act(request: HttpRequest, project: Project) -> Notice:
    """Apply the posted review through the services, as the JSON API does, and say what happened."""
    post = request.POST
    try:
        if post.get("id") or post.get("label"):
            raw = post.get("id", "").strip()
            if not raw.isdigit():
                return Notice("error", ERROR_IDS)
            label = post.get("label", "").strip()
            if not label:
                return Notice("error", ERROR_CHOOSE_LABEL.format(id=raw))
            correction = services.llm_label_correct(
                project=project, user=request.user, annotation_id=int(raw), label=label
            )
            return Notice(
                "success",
                MESSAGE_CORRECTED.format(id=raw, example_id=correction.example_id, label=correction.label.name),
            )
        raw_ids = [value.strip() for value in post.getlist("ids") if value.strip()]
        if not all(value.isdigit() for value in raw_ids):
            return Notice("error", ERROR_IDS)
        if not raw_ids and post.get("action") in REVIEW_ACTIONS:
            return Notice("error", ERROR_NOTHING_SELECTED)
        action = post.get("action", "")
        result = services.llm_labels_review(
            project=project, user=request.user, ids=[int(value) for value in raw_ids], action=action
        )
    except services.LLMReviewError as exc:
        return Notice("error", str(exc))
    text = MESSAGE_REVIEWED.format(action=ACTION_DONE[action], count=result.changed, s=_plural(result.changed))
    if not result.skipped:
        return Notice("success", text)
    reasons = tuple(str(item["detail"]) for item in result.skipped[:SKIPPED_SHOWN])
    more = max(len(result.skipped) - SKIPPED_SHOWN, 0)
    text = f"{text} {MESSAGE_SKIPPED.format(count=len(result.skipped))}"
    if more:
        reasons += (MESSAGE_SKIPPED_MORE.format(count=more),)
    return Notice("warning", text, reasons)
