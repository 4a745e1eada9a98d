"""Reviewers' pages: agreement and conflicts, gold questions, the queue at a glance; the admins' settings page."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from labeling import selectors, services
from labeling.models import Label, Project, ProjectRole
from labeling.permissions import role_allows
from labeling.project_settings import BOUNDS, labeling_settings_get
from labeling.selectors import gold as gold_selectors
from labeling.selectors import quality as quality_selectors
from labeling.services import gold as gold_services
from labeling.services import settings as settings_services

from .common import FORBIDDEN_MESSAGE, page_context, project_view

PAGE_SIZE = 50
ERROR_CHOOSE_LABEL = "Choose the final label."
ERROR_NO_SUCH_EXAMPLE = (
    "There is no example {example_id} in this project; the id is the number shown on the Examples page."
)
ERROR_NOT_GOLD = "Example {example_id} is not a gold question."
ERROR_UNKNOWN_ACTION = "Unknown action; reload the page and try again."
MESSAGE_SETTLED = "Example {example_id} settled as {label}."
MESSAGE_GOLD_ADDED = "Example {example_id} is now a gold question; its answer is {label}."
MESSAGE_GOLD_REMOVED = "Example {example_id} is no longer a gold question; the answers people gave it are kept."
MESSAGE_PROMOTED = "Promoted {count} labeled example{s} to gold questions."
MESSAGE_NOTHING_TO_PROMOTE = (
    "No example could be promoted: promotion needs examples with an imported or adjudicated label that are not "
    "gold questions already."
)
MESSAGE_QUEUED = "Queued {count} example{s} for labeling."
MESSAGE_NOTHING_QUEUED = "Nothing to add: every example is already in the queue or has a settled label."
MESSAGE_SETTINGS_SAVED = "Settings saved."
MESSAGE_OVERLAP_SYNC = (
    " Overlap changed from {before} to {after}: a background job is now matching the queue's slots to it, so "
    "each waiting example gets {after} label{s}; labels already given are kept."
)


def _see_other(url: str) -> HttpResponseRedirect:
    """Redirect after a POST with 303, so a reload does not post again."""
    return HttpResponseRedirect(url, status=303)


def _plural(count: int) -> str:
    return "" if count == 1 else "s"


# Quality and conflicts


@require_GET
@project_view(ProjectRole.REVIEWER)
def quality(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show agreement, each annotator's numbers and the open conflicts, each with a form to settle it."""
    context = page_context(
        request,
        project,
        role,
        report=quality_selectors.quality_report(project=project, limit=quality_selectors.CONFLICTS_SHOWN),
        settings=labeling_settings_get(project),
    )
    return render(request, "labeling/quality.html", context)


@require_POST
@project_view(ProjectRole.REVIEWER)
def adjudicate(request: HttpRequest, *, project: Project, role: str, example_id: int) -> HttpResponse:
    """Settle an example's final label; htmx gets the settled row and fresh counters, a plain POST a 303 back."""
    example = selectors.example_get(project=project, example_id=example_id)
    if example is None:
        raise Http404("No such example in this project.")
    choice = request.POST.get("label", "").strip()
    error = ERROR_CHOOSE_LABEL if not choice else ""
    annotation = None
    if not error:
        try:
            annotation = services.annotation_adjudicate(
                user=request.user,
                example=example,
                label=int(choice) if choice.isdigit() else choice,
                note=request.POST.get("note", ""),
            )
        except services.AnnotationError as exc:
            error = str(exc)
    if request.htmx:
        context = page_context(request, project, role, summary=quality_selectors.conflict_summary(project=project))
        if annotation is not None:
            context.update(example_id=example.pk, label=annotation.label.name)
            return render(request, "labeling/quality.html#settled", context)
        # htmx swaps only successful responses, so the row comes back with its error under a 200.
        conflict = quality_selectors.conflict_get(project=project, example_id=example.pk)
        context.update(conflict=conflict, example_id=example.pk, error=error)
        return render(request, "labeling/quality.html#conflict", context)
    if annotation is not None:
        messages.success(request, MESSAGE_SETTLED.format(example_id=example.pk, label=annotation.label.name))
    else:
        messages.error(request, error)
    return _see_other(reverse("labeling:quality", kwargs={"slug": project.slug}) + "#conflicts")


# Gold questions


class GoldAddForm(forms.Form):
    example_id = forms.IntegerField(min_value=1, error_messages={"required": "Enter the example's id."})
    label = forms.ChoiceField(error_messages={"required": "Choose the gold answer."})

    def __init__(self, *args: Any, labels: list[Label], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["label"].choices = [("", "Choose…")] + [(label.name, label.name) for label in labels]


class GoldPromoteForm(forms.Form):
    count = forms.IntegerField(
        min_value=1,
        max_value=gold_services.MAX_PROMOTE,
        initial=20,
        error_messages={
            "required": gold_services.ERROR_PROMOTE_COUNT,
            "min_value": gold_services.ERROR_PROMOTE_COUNT,
            "max_value": gold_services.ERROR_PROMOTE_COUNT,
        },
    )


@require_http_methods(["GET", "POST"])
@project_view(ProjectRole.REVIEWER)
def gold_list(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """List the gold questions with how often people got them right; add, remove or promote them by `action`."""
    labels = list(selectors.label_list(project=project))
    add_form = GoldAddForm(labels=labels)
    promote_form = GoldPromoteForm()
    url = reverse("labeling:gold_list", kwargs={"slug": project.slug})
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "add":
            add_form = GoldAddForm(request.POST, labels=labels)
            if _gold_add(request, project, add_form):
                return _see_other(url)
        elif action == "remove":
            _gold_remove(request, project)
            return _see_other(url)
        elif action == "promote":
            promote_form = GoldPromoteForm(request.POST)
            if promote_form.is_valid():
                count = gold_services.gold_promote(
                    project=project, user=request.user, count=promote_form.cleaned_data["count"]
                )
                if count:
                    messages.success(request, MESSAGE_PROMOTED.format(count=count, s=_plural(count)))
                else:
                    messages.warning(request, MESSAGE_NOTHING_TO_PROMOTE)
                return _see_other(url)
        else:
            messages.error(request, ERROR_UNKNOWN_ACTION)
            return _see_other(url)
    page = Paginator(gold_selectors.gold_list(project=project), PAGE_SIZE).get_page(request.GET.get("page"))
    context = page_context(
        request,
        project,
        role,
        page=page,
        summary=gold_selectors.gold_summary(project=project),
        gold_rate_percent=_percent(labeling_settings_get(project).gold_rate),
        add_form=add_form,
        promote_form=promote_form,
        labels=labels,
        max_promote=gold_services.MAX_PROMOTE,
    )
    if request.htmx and request.method == "GET":
        return render(request, "labeling/gold.html#results", context)
    return render(request, "labeling/gold.html", context, status=400 if request.method == "POST" else 200)


def _gold_add(request: HttpRequest, project: Project, form: GoldAddForm) -> bool:
    """Make the chosen example gold; put any problem on the form and return whether it worked."""
    if not form.is_valid():
        return False
    example_id = form.cleaned_data["example_id"]
    example = selectors.example_get(project=project, example_id=example_id)
    if example is None:
        form.add_error("example_id", ERROR_NO_SUCH_EXAMPLE.format(example_id=example_id))
        return False
    try:
        annotation = services.gold_set(user=request.user, example=example, label=form.cleaned_data["label"])
    except services.AnnotationError as exc:
        form.add_error("label", str(exc))
        return False
    messages.success(request, MESSAGE_GOLD_ADDED.format(example_id=example.pk, label=annotation.label.name))
    return True


def _gold_remove(request: HttpRequest, project: Project) -> None:
    raw = request.POST.get("example_id", "").strip()
    example = selectors.example_get(project=project, example_id=int(raw)) if raw.isdigit() else None
    if example is None:
        messages.error(request, ERROR_NO_SUCH_EXAMPLE.format(example_id=raw[:20] or "?"))
    elif services.gold_unset(user=request.user, example=example):
        messages.success(request, MESSAGE_GOLD_REMOVED.format(example_id=example.pk))
    else:
        messages.error(request, ERROR_NOT_GOLD.format(example_id=example.pk))


def _percent(fraction: float) -> str:
    """Format a share as a percentage without trailing zeros: 0.05 as '5', 0.125 as '12.5'."""
    return f"{round(fraction * 100, 2):g}"


# Queue


@require_http_methods(["GET", "POST"])
@project_view(ProjectRole.REVIEWER)
def queue_overview(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show the queue's progress, why items are in it and who holds leases; admins may queue unqueued examples."""
    if request.method == "POST":
        if not role_allows(role, ProjectRole.ADMIN):
            message = FORBIDDEN_MESSAGE.format(
                needed="admin", project=project.name, role=ProjectRole(role).label.lower()
            )
            context = page_context(request, project, role, needed="admin", message=message)
            return render(request, "labeling/forbidden.html", context, status=403)
        added = services.queue_fill(project=project)
        if added:
            messages.success(request, MESSAGE_QUEUED.format(count=added, s=_plural(added)))
        else:
            messages.info(request, MESSAGE_NOTHING_QUEUED)
        return _see_other(reverse("labeling:queue_overview", kwargs={"slug": project.slug}))
    progress = selectors.queue_progress(project=project)
    settings = labeling_settings_get(project)
    context = page_context(
        request,
        project,
        role,
        progress=progress,
        done_percent=round(100 * progress["done"] / progress["total"]) if progress["total"] else 0,
        composition=selectors.queue_composition(project=project),
        leases=selectors.lease_list(project=project),
        unqueued=selectors.unqueued_example_count(project=project),
        settings=settings,
        gold_rate_percent=_percent(settings.gold_rate),
        now=timezone.now(),
    )
    return render(request, "labeling/queue.html", context)


# Settings

SHORTCUT_PREFIX = "shortcut_"
_SETTING_FIELDS = {"gold_rate": "gold_rate_percent"}


class ProjectSettingsForm(forms.Form):
    """The labeling settings with the bounds of `BOUNDS`, and one shortcut field per label."""

    overlap = forms.IntegerField(min_value=BOUNDS["overlap"][0], max_value=BOUNDS["overlap"][1])
    lease_minutes = forms.IntegerField(min_value=BOUNDS["lease_minutes"][0], max_value=BOUNDS["lease_minutes"][1])
    gold_rate_percent = forms.DecimalField(
        min_value=Decimal(str(BOUNDS["gold_rate"][0] * 100)),
        max_value=Decimal(str(BOUNDS["gold_rate"][1] * 100)),
        max_digits=4,
        decimal_places=1,
    )
    show_suggestions = forms.BooleanField(required=False)
    curriculum_items = forms.IntegerField(
        required=False, min_value=BOUNDS["curriculum_items"][0], max_value=BOUNDS["curriculum_items"][1]
    )

    def __init__(self, *args: Any, labels: list[Label], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels = labels
        for label in labels:
            # Length and the other key rules are the service's to check, so every caller gets the same messages.
            self.fields[f"{SHORTCUT_PREFIX}{label.pk}"] = forms.CharField(required=False, strip=False)

    @property
    def shortcut_rows(self) -> list[tuple[Label, forms.BoundField]]:
        return [(label, self[f"{SHORTCUT_PREFIX}{label.pk}"]) for label in self.labels]

    def clean(self) -> dict[str, Any]:
        """Check the shortcuts with the service's rules too, so every problem shows at once."""
        data = super().clean()
        shortcuts = {label.pk: data.get(f"{SHORTCUT_PREFIX}{label.pk}") or "" for label in self.labels}
        _, errors = settings_services.label_shortcuts_check(labels=self.labels, shortcuts=shortcuts)
        for label_id, message in errors.items():
            self.add_error(f"{SHORTCUT_PREFIX}{label_id}", message)
        return data

    def settings_data(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "overlap": data["overlap"],
            "lease_minutes": data["lease_minutes"],
            "gold_rate": round(float(data["gold_rate_percent"]) / 100, 4),
            "show_suggestions": data["show_suggestions"],
            # Left out when the field was not sent, so the saved value stays.
            **({"curriculum_items": data["curriculum_items"]} if data.get("curriculum_items") is not None else {}),
        }

    def shortcuts(self) -> dict[int, str]:
        return {label.pk: self.cleaned_data[f"{SHORTCUT_PREFIX}{label.pk}"] for label in self.labels}

    def add_service_errors(self, errors: dict[str | int, str]) -> None:
        """Put each of the service's problems next to the field it is about."""
        for key, message in errors.items():
            field = f"{SHORTCUT_PREFIX}{key}" if isinstance(key, int) else _SETTING_FIELDS.get(key, key)
            self.add_error(field if field in self.fields else None, message)


@require_http_methods(["GET", "POST"])
@project_view(ProjectRole.ADMIN)
def project_settings(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show and save how the queue hands out work and which key applies each label."""
    labels = list(selectors.label_list(project=project))
    current = labeling_settings_get(project)
    if request.method == "GET":
        initial = {
            "overlap": current.overlap,
            "lease_minutes": current.lease_minutes,
            "gold_rate_percent": _percent(current.gold_rate),
            "show_suggestions": current.show_suggestions,
            "curriculum_items": current.curriculum_items,
            **{f"{SHORTCUT_PREFIX}{label.pk}": label.shortcut for label in labels},
        }
        form = ProjectSettingsForm(initial=initial, labels=labels)
        return render(request, "labeling/settings.html", page_context(request, project, role, form=form))
    form = ProjectSettingsForm(request.POST, labels=labels)
    if form.is_valid():
        try:
            saved = settings_services.labeling_settings_update(
                project=project, data=form.settings_data(), labels_shortcuts=form.shortcuts(), user=request.user
            )
        except settings_services.SettingsError as exc:
            form.add_service_errors(exc.errors)
        else:
            message = MESSAGE_SETTINGS_SAVED
            if saved.overlap != current.overlap:
                message += MESSAGE_OVERLAP_SYNC.format(
                    before=current.overlap, after=saved.overlap, s=_plural(saved.overlap)
                )
            messages.success(request, message)
            return _see_other(reverse("labeling:project_settings", kwargs={"slug": project.slug}))
    return render(request, "labeling/settings.html", page_context(request, project, role, form=form), status=400)
