"""The rules page: the live business rules and their history for reviewers; a structured editor for admins.

The editor posts plain form fields, one group per rule and condition. Each rule and condition carries a key the
page chose (`rule=<key>` and `rule-<key>-cond=<key>` in document order), so moving or removing one in the browser
needs no renumbering: the order of those fields is the order of the rules.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from labeling.models import Label, Project, ProjectRole
from labeling.views.common import page_context, project_view
from models_app import services
from models_app.ml.rules import RuleError
from models_app.models import RuleAction, RuleSet

KEY = re.compile(r"^[0-9a-z_]{1,20}$")
RULE_POSITION = re.compile(r"^Rule (\d+) \(")
KINDS = [
    ("keywords_any", "Keywords: any of"),
    ("keywords_all", "Keywords: all of"),
    ("regex", "Regex (RE2)"),
    ("meta_equals", "Metadata equals"),
    ("meta_in", "Metadata is in"),
    ("confidence_below", "Confidence below"),
    ("predicted_in", "Predicted label in"),
]
ACTIONS = [
    ("force", "Force a label"),
    ("forbid", "Forbid a label"),
    ("abstain", "Abstain (send to people)"),
    ("tag", "Tag the prediction"),
]
HISTORY_SHOWN = 50

ERROR_NO_RULE_SET = "This project has no rule set {number}."
MESSAGE_SAVED = "Saved rules v{number}; they are not live until published."
MESSAGE_SAVED_PUBLISHED = "Saved rules v{number} and put them live on model v{model}."
MESSAGE_PUBLISHED = "Rules v{number} are live on model v{model}."
MESSAGE_OFF = "No rules are live now: the model's own predictions serve."


def _rules_url(project: Project) -> str:
    return reverse("models_app:rules", kwargs={"slug": project.slug})


def _see_other(url: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(url, status=303)


def _split(raw: str) -> list[str]:
    """Read a comma- or line-separated list, dropping blanks."""
    return [item.strip() for item in re.split(r"[,\n]", raw or "") if item.strip()]


def _threshold(raw: str) -> Any:
    """Return the number typed, or the text as typed so the engine's message quotes it."""
    try:
        return float(raw)
    except (TypeError, ValueError):
        return (raw or "").strip()


def _condition_from_post(post: QueryDict, key: str) -> dict[str, Any]:
    """Turn one condition's fields into the engine's form; only the fields of its kind are read."""
    kind = post.get(f"cond-{key}-kind", "")
    field = lambda name: post.get(f"cond-{key}-{name}", "")  # noqa: E731
    if kind in ("keywords_any", "keywords_all"):
        return {"kind": "keywords", "words": _split(field("words")), "mode": kind.removeprefix("keywords_")}
    if kind == "regex":
        return {"kind": "regex", "pattern": field("pattern")}
    if kind == "meta_equals":
        return {"kind": "meta_equals", "field": field("field").strip(), "value": field("value")}
    if kind == "meta_in":
        return {"kind": "meta_in", "field": field("field").strip(), "values": _split(field("values"))}
    if kind == "confidence_below":
        return {"kind": "confidence_below", "threshold": _threshold(field("threshold"))}
    if kind == "predicted_in":
        return {"kind": "predicted_in", "labels": post.getlist(f"cond-{key}-labels")}
    return {"kind": kind}


def rules_from_post(post: QueryDict) -> tuple[list[dict[str, Any]], list[str]]:
    """Read the editor's fields into rule specs in page order; return them with the page's key for each rule."""
    specs: list[dict[str, Any]] = []
    keys: list[str] = []
    for key in post.getlist("rule"):
        if not KEY.match(key) or key in keys:
            continue
        action = post.get(f"rule-{key}-action", "")
        spec: dict[str, Any] = {
            "name": post.get(f"rule-{key}-name", "").strip(),
            "enabled": f"rule-{key}-enabled" in post,
            "conditions": [
                _condition_from_post(post, cond)
                for cond in dict.fromkeys(post.getlist(f"rule-{key}-cond"))
                if KEY.match(cond)
            ],
            "action": action,
        }
        if action in (RuleAction.FORCE, RuleAction.FORBID):
            spec["label"] = post.get(f"rule-{key}-label", "")
        if action == RuleAction.TAG:
            spec["tag"] = post.get(f"rule-{key}-tag", "")
        specs.append(spec)
        keys.append(key)
    return specs, keys


def _error_key(message: str, keys: list[str]) -> str | None:
    """Return the page key of the rule a RuleError names ("Rule 3 (...)"), or None for the whole set."""
    found = RULE_POSITION.match(message)
    if found is None or not 0 < int(found.group(1)) <= len(keys):
        return None
    return keys[int(found.group(1)) - 1]


def _editor_condition(spec: dict[str, Any], key: str) -> dict[str, Any]:
    """Turn a stored condition back into the editor's fields."""
    kind = spec.get("kind", "")
    row = {"key": key, "kind": kind, "words": "", "pattern": "", "field": "", "value": "", "values": "", "labels": []}
    if kind == "keywords":
        row["kind"] = f"keywords_{spec.get('mode', 'any')}"
        row["words"] = ", ".join(map(str, spec.get("words") or []))
    row["pattern"] = spec.get("pattern", "")
    row["field"] = spec.get("field", "")
    row["value"] = str(spec.get("value", ""))
    row["values"] = ", ".join(map(str, spec.get("values") or []))
    row["threshold"] = spec.get("threshold", "")
    row["labels"] = [str(label) for label in spec.get("labels") or []]
    return row


def _editor_rows(specs: list[dict[str, Any]], keys: list[str] | None = None, error: str = "") -> list[dict[str, Any]]:
    """Lay rules out for the editor with page keys, and the error next to the rule it names."""
    keys = keys or [str(index) for index in range(1, len(specs) + 1)]
    error_key = _error_key(error, keys) if error else None
    rows = []
    for position, (spec, key) in enumerate(zip(specs, keys, strict=True), start=1):
        conditions = spec.get("conditions") if isinstance(spec.get("conditions"), list) else []
        rows.append(
            {
                "key": key,
                "position": position,
                "name": spec.get("name", ""),
                "enabled": spec.get("enabled", True),
                "action": spec.get("action", ""),
                "label": spec.get("label", ""),
                "tag": spec.get("tag", ""),
                "conditions": [_editor_condition(cond, f"{key}_{i}") for i, cond in enumerate(conditions, start=1)],
                "error": error if key == error_key else "",
            }
        )
    return rows


def _describe_condition(spec: dict[str, Any]) -> str:
    kind = spec.get("kind")
    if kind == "keywords":
        return f"text has {spec.get('mode', 'any')} of: {', '.join(spec.get('words') or [])}"
    if kind == "regex":
        return f"text matches /{spec.get('pattern', '')}/"
    if kind == "meta_equals":
        return f"{spec.get('field')} = {spec.get('value')}"
    if kind == "meta_in":
        return f"{spec.get('field')} is one of: {', '.join(map(str, spec.get('values') or []))}"
    if kind == "confidence_below":
        return f"the model's confidence is below {spec.get('threshold')}"
    if kind == "predicted_in":
        return f"the label so far is one of: {', '.join(spec.get('labels') or [])}"
    return str(kind)


def describe_rule(spec: dict[str, Any]) -> dict[str, Any]:
    """Put a rule in words for the read-only list: when it fires and what it does."""
    conditions = [_describe_condition(cond) for cond in spec.get("conditions") or []]
    action = spec.get("action")
    does = {
        "force": f"force “{spec.get('label')}”",
        "forbid": f"forbid “{spec.get('label')}”",
        "abstain": "abstain (send to people)",
        "tag": f"tag “{spec.get('tag')}”",
    }.get(action, str(action))
    return {"name": spec.get("name"), "enabled": spec.get("enabled", True), "when": conditions, "does": does}


def preview_display(preview: dict[str, Any] | None) -> dict[str, Any] | None:
    """Add the percentages the panel shows to a preview."""
    if not preview:
        return preview
    coverage = preview.get("coverage")
    return {**preview, "coverage_text": f"{coverage * 100:.1f}%" if coverage is not None else "—"}


def _labels(project: Project) -> list[str]:
    return list(Label.objects.filter(project=project).order_by("order", "name").values_list("name", flat=True))


def _page_context(
    project: Project,
    role: str,
    *,
    specs: list[dict[str, Any]] | None = None,
    keys: list[str] | None = None,
    error: str = "",
    publish_error: str = "",
    note: str = "",
    reason: str = "",
) -> dict[str, Any]:
    deployment = services.deployment_get(project_id=project.pk)
    live: RuleSet | None = deployment.rule_set if deployment is not None else None
    history = services.rule_set_list(project=project, limit=HISTORY_SHOWN)
    live_specs = services.rule_specs(live)
    if specs is None:
        specs, keys = live_specs, None
    labels = _labels(project)
    rows = _editor_rows(specs, keys, error)
    blank_condition = _editor_condition({"kind": "keywords", "mode": "any"}, "__C__")
    blank_rule = _editor_rows([{"name": "", "action": "force", "label": labels[0] if labels else ""}], ["__R__"])[0]
    return {
        "deployment": deployment,
        "live": live,
        "live_rules": [describe_rule(spec) for spec in live_specs],
        "live_preview": preview_display(live.preview if live is not None else None),
        "history": [
            {
                "rule_set": rule_set,
                "is_live": live is not None and rule_set.pk == live.pk,
                "summary": services.preview_summary(rule_set.preview or {}),
                "rules": [describe_rule(rule.as_spec()) for rule in rule_set.rules.all()],
            }
            for rule_set in history
        ],
        "next_number": (history[0].number if history else 0) + 1,
        "labels": labels,
        "kinds": KINDS,
        "actions": ACTIONS,
        "rules": rows,
        "next_key": max([int(row["key"]) for row in rows if row["key"].isdigit()] + [0]) + 1,
        "blank_rule": {**blank_rule, "conditions": [blank_condition]},
        "blank_condition": blank_condition,
        "editor_error": error,
        "publish_error": publish_error,
        "note": note,
        "reason": reason,
    }


@require_GET
@project_view(ProjectRole.REVIEWER)
def rules(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Show the live rules, their history and (for admins) the editor with its live preview."""
    return render(
        request, "models_app/rules.html", page_context(request, project, role, **_page_context(project, role))
    )


@require_POST
@project_view(ProjectRole.REVIEWER)
def rules_preview(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Preview the editor's rules on the holdout; the panel shows the numbers, or the error next to its rule."""
    specs, keys = rules_from_post(request.POST)
    preview, error = None, ""
    try:
        preview = services.rules_preview(project=project, rules=specs)
    except RuleError as exc:
        error = str(exc)
    error_key = _error_key(error, keys) if error else None
    context = page_context(
        request,
        project,
        role,
        preview=preview_display(preview),
        preview_error=error,
        rule_errors=[(key, error if key == error_key else "") for key in keys],
    )
    return render(request, "models_app/rules.html#preview", context)


@require_POST
@project_view(ProjectRole.ADMIN)
def rules_save(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Save the editor's rules as the next version, and with `intent=publish` put them live too."""
    specs, keys = rules_from_post(request.POST)
    note = request.POST.get("note", "")
    reason = request.POST.get("reason", "")
    publish = request.POST.get("intent") == "publish"
    try:
        rule_set = services.rule_set_save(
            project=project, rules=specs, note=note, user=request.user, publish=publish, reason=reason
        )
    except (RuleError, services.PublishError) as exc:
        invalid = isinstance(exc, RuleError)
        extra = _page_context(
            project,
            role,
            specs=specs,
            keys=keys,
            error=str(exc) if invalid else "",
            publish_error="" if invalid else str(exc),
            note=note,
            reason=reason,
        )
        context = page_context(request, project, role, **extra)
        return render(request, "models_app/rules.html", context, status=400 if invalid else 409)
    if publish:
        deployment = services.deployment_get(project_id=project.pk)
        notice = MESSAGE_SAVED_PUBLISHED.format(number=rule_set.number, model=deployment.model_version.number)
    else:
        notice = MESSAGE_SAVED.format(number=rule_set.number)
    messages.success(request, notice)
    return _see_other(_rules_url(project))


@require_POST
@project_view(ProjectRole.ADMIN)
def rules_publish(request: HttpRequest, *, project: Project, role: str, number: int) -> HttpResponse:
    """Put a saved rule set live (or back live: a rollback); the refusal's message shows on the page."""
    rule_set = services.rule_set_get(project=project, number=number)
    if rule_set is None:
        raise Http404(ERROR_NO_RULE_SET.format(number=number))
    try:
        event = services.rule_set_publish(rule_set=rule_set, user=request.user, reason=request.POST.get("reason", ""))
    except services.PublishError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, MESSAGE_PUBLISHED.format(number=number, model=event.model_version.number))
    return _see_other(_rules_url(project) + "#history")


@require_POST
@project_view(ProjectRole.ADMIN)
def rules_off(request: HttpRequest, *, project: Project, role: str) -> HttpResponse:
    """Take the rules off: the published model's own predictions serve."""
    try:
        services.rule_set_publish(
            rule_set=None, project=project, user=request.user, reason=request.POST.get("reason", "")
        )
    except services.PublishError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, MESSAGE_OFF)
    return _see_other(_rules_url(project) + "#history")
