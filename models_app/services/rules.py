"""Business rules as versioned rule sets: preview them on a model's holdout, save a new number, put one live.

A rule set is saved once and never edited: an edit saves the next number, so every prediction log and deployment
event names the exact rules that ran. Previews run the pure engine (`models_app.ml.rules`) on the holdout the
published model was evaluated on, so "what would these rules change" is answered on examples no model trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Max, Prefetch

from labeling.models import Label, Project
from models_app.ml.rules import RuleError, apply_rules, apply_rules_arrays, compile_rules, rules_effect
from models_app.models import DeploymentEvent, ModelVersion, ModelVersionStatus, Rule, RuleSet

from .gate import deployment_get, rule_specs
from .publishing import PublishError, rules_publish
from .scoring import holdout_load, model_load, version_proba

SAMPLE_ROWS = 20
SAMPLE_TEXT_CHARS = 500
NOTE_LIMIT = 2000
PREVIEW_STATUSES = (ModelVersionStatus.EVALUATED, ModelVersionStatus.REJECTED, ModelVersionStatus.RETIRED)
MESSAGE_NO_MODEL = "There is no model to preview the rules on yet: train one (its holdout is where rules are measured)."
MESSAGE_EMPTY_HOLDOUT = "Model v{number} has no holdout examples left to preview the rules on."
WORSE_ALL_ABSTAIN = "they abstain on every holdout example"
WORSE_MACRO_F1 = "macro-F1 {before:.3f} without them, {after:.3f} with them on the examples they answer"
ERROR_NOTE_LENGTH = f"Keep the note under {NOTE_LIMIT:,} characters."
ERROR_NO_PROJECT = "Say which project's rules to take off."
ERROR_STORED_RULES = "Rules v{number} no longer validate: {problem}"


def _project_labels(project_id: int) -> list[str]:
    return [
        str(name)
        for name in Label.objects.filter(project_id=project_id).order_by("order", "name").values_list("name", flat=True)
    ]


def _preview_version(project: Project) -> tuple[ModelVersion | None, bool]:
    """Return the model to preview on (the published one, else the newest evaluated one with a split) and whether it serves."""
    deployment = deployment_get(project_id=project.pk)
    if deployment is not None:
        return deployment.model_version, True
    version = (
        ModelVersion.objects.filter(project_id=project.pk, status__in=PREVIEW_STATUSES)
        .exclude(split_path="")
        .order_by("-number")
        .first()
    )
    return version, False


def _number(value: Any) -> Any:
    """Turn numpy scalars (and containers of them) into plain JSON values, so a preview can be stored."""
    if isinstance(value, Mapping):
        return {str(key): _number(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_number(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def preview_worse(preview: Mapping[str, Any]) -> str:
    """Describe how the rules make the model worse on the holdout (lower macro-F1 where they answer), or ""."""
    if not preview.get("available"):
        return ""
    before = (preview.get("without") or {}).get("macro_f1")
    after = (preview.get("with_rules") or {}).get("macro_f1")
    if before is None:
        return ""
    if after is None:
        return WORSE_ALL_ABSTAIN
    if after < before - 1e-9:
        return WORSE_MACRO_F1.format(before=before, after=after)
    return ""


def _preview_on(version: ModelVersion, rules: Sequence[Mapping[str, Any]], *, published: bool) -> dict[str, Any]:
    """Run the rules on the version's holdout: the engine's effect, firings in rule order, and changed sample rows."""
    labels = list(model_load(version).labels)
    compiled = compile_rules(rules, labels)
    base = {"available": True, "message": "", "model_version": version.number, "published": published}
    holdout = holdout_load(version)
    if holdout is None or not holdout.y_true:
        message = MESSAGE_EMPTY_HOLDOUT.format(number=version.number)
        return {**base, "available": False, "message": message, "holdout_size": 0, "rules": len(compiled.rules)}
    proba = version_proba(version, holdout.example_ids, holdout.texts, labels)
    effect = rules_effect(compiled, holdout.texts, holdout.metas, proba, labels, holdout.y_true)
    predicted, abstained, _ = apply_rules_arrays(compiled, holdout.texts, holdout.metas, proba, labels)
    model = np.asarray(labels)[proba.argmax(axis=1)]
    truth = np.asarray(holdout.y_true)
    changed = predicted != model
    fixed = int(np.count_nonzero(changed & (predicted == truth)))
    broken = int(np.count_nonzero(changed & (model == truth)))
    order = [*np.flatnonzero(changed).tolist(), *np.flatnonzero(abstained & ~changed).tolist()][:SAMPLE_ROWS]
    ruled = apply_rules(
        compiled, [holdout.texts[i] for i in order], [holdout.metas[i] for i in order], proba[order], labels
    )
    samples = [
        {
            "example_id": int(holdout.example_ids[row]),
            "text": holdout.texts[row][:SAMPLE_TEXT_CHARS],
            "model_label": item.model_label,
            "label": item.label,
            "true_label": holdout.y_true[row],
            "abstained": item.abstained,
            "rules_fired": list(item.rules_fired),
            "tags": list(item.tags),
        }
        for row, item in zip(order, ruled, strict=True)
    ]
    found = effect.to_dict()
    firings = [
        {"position": position, "name": rule.name, "enabled": rule.enabled, "count": int(found["fired"][rule.name])}
        for position, rule in enumerate(compiled.rules, start=1)
    ]
    preview = {
        **base,
        "holdout_size": effect.size,
        "rules": len(compiled.rules),
        "changed": effect.changed,
        "fixed": fixed,
        "broken": broken,
        "abstained": effect.abstained,
        "coverage": effect.coverage,
        "fired": found["fired"],
        "firings": firings,
        "without": found["without"],
        "with_rules": found["with_rules"],
        "samples": samples,
    }
    preview = _number(preview)
    preview["worse"] = preview_worse(preview)
    return preview


def rules_preview(*, project: Project, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """Measure what the rules would do on the published model's holdout; RuleError when they do not validate.

    Without a published model the newest evaluated (or rejected, or retired) version with a recorded split is
    used; without any, the rules are still validated and the answer says there is nothing to preview on.
    """
    version, published = _preview_version(project)
    if version is None:
        compiled = compile_rules(rules, _project_labels(project.pk))
        return {
            "available": False,
            "message": MESSAGE_NO_MODEL,
            "model_version": None,
            "published": False,
            "holdout_size": 0,
            "rules": len(compiled.rules),
            "worse": "",
        }
    return _preview_on(version, rules, published=published)


def preview_summary(preview: Mapping[str, Any]) -> dict[str, Any]:
    """Return the headline numbers of a stored preview (no samples), for lists of rule sets."""
    keys = ("available", "message", "model_version", "holdout_size", "changed", "fixed", "broken", "abstained")
    summary = {key: preview.get(key) for key in keys}
    summary["coverage"] = preview.get("coverage")
    for side in ("without", "with_rules"):
        metrics = preview.get(side) or {}
        summary[side] = {"accuracy": metrics.get("accuracy"), "macro_f1": metrics.get("macro_f1")}
    summary["worse"] = preview.get("worse", "")
    return summary


def _rule_rows(rule_set: RuleSet, rules: Sequence[Mapping[str, Any]]) -> list[Rule]:
    """Build one Rule row per validated spec, positions from 1, names and tags as the engine reads them."""
    rows = []
    for position, spec in enumerate(rules, start=1):
        action = spec["action"]
        rows.append(
            Rule(
                rule_set=rule_set,
                position=position,
                name=spec["name"].strip(),
                enabled=spec.get("enabled", True),
                conditions=list(spec["conditions"]),
                action=action,
                label=(spec.get("label") or "") if action in ("force", "forbid") else "",
                tag=(spec.get("tag") or "").strip() if action == "tag" else "",
            )
        )
    return rows


def _create(project: Project, rules: Sequence[Mapping[str, Any]], note: str, user: Any, preview: dict) -> RuleSet:
    """Insert the next number with its rules; a concurrent save that took the number first makes it retry once."""
    for attempt in range(2):
        try:
            with transaction.atomic():
                latest = RuleSet.objects.filter(project_id=project.pk).aggregate(top=Max("number"))["top"] or 0
                rule_set = RuleSet.objects.create(
                    project_id=project.pk,
                    number=latest + 1,
                    note=note,
                    preview=preview,
                    created_by_id=getattr(user, "pk", None),
                )
                Rule.objects.bulk_create(_rule_rows(rule_set, rules))
            return rule_set
        except IntegrityError:
            if attempt or not RuleSet.objects.filter(project_id=project.pk, number=latest + 1).exists():
                raise
    raise AssertionError("unreachable")


def rule_set_save(
    *,
    project: Project,
    rules: list[dict[str, Any]],
    note: str,
    user: Any,
    publish: bool = False,
    reason: str = "",
) -> RuleSet:
    """Validate the rules and save them as the project's next rule set, with the preview seen at save time.

    With `publish`, the new rule set also goes live in the same transaction: when publishing is refused
    (PublishError) nothing is saved.
    """
    note = (note or "").strip()
    if len(note) > NOTE_LIMIT:
        raise RuleError(ERROR_NOTE_LENGTH)
    preview = rules_preview(project=project, rules=rules)
    with transaction.atomic():
        rule_set = _create(project, rules, note, user, preview)
        if publish:
            rule_set_publish(rule_set=rule_set, user=user, reason=reason, preview=preview)
    return rule_set


def rule_set_publish(
    *,
    rule_set: RuleSet | None,
    user: Any,
    reason: str = "",
    project: Project | None = None,
    preview: Mapping[str, Any] | None = None,
) -> DeploymentEvent:
    """Put a rule set live on the published model (or, with None and `project`, take the rules off).

    The rules are measured on the published model's holdout first; when they lower macro-F1 where they answer,
    publishing needs a reason (PublishError otherwise). `preview` reuses one just computed on that model.
    """
    if rule_set is None and project is None:
        raise PublishError(ERROR_NO_PROJECT)
    project_id = rule_set.project_id if rule_set is not None else project.pk
    worse = ""
    deployment = deployment_get(project_id=project_id)
    checked_on = deployment.model_version_id if deployment is not None else None
    if rule_set is not None and deployment is not None:
        version = deployment.model_version
        if preview is None or not preview.get("published") or preview.get("model_version") != version.number:
            try:
                preview = _preview_on(version, rule_specs(rule_set), published=True)
            except RuleError as exc:
                raise PublishError(ERROR_STORED_RULES.format(number=rule_set.number, problem=exc)) from None
        worse = preview_worse(preview)
    return rules_publish(
        project_id=project_id, rule_set=rule_set, user=user, reason=reason, worse=worse, checked_on=checked_on
    )


def rule_set_list(*, project: Project, limit: int = 50) -> list[RuleSet]:
    """Return the project's rule sets, newest first, with their rules in order and who saved them."""
    return list(
        RuleSet.objects.filter(project_id=project.pk)
        .select_related("created_by")
        .prefetch_related(Prefetch("rules", queryset=Rule.objects.order_by("position")))
        .order_by("-number")[: max(1, limit)]
    )


def rule_set_get(*, project: Project, number: int) -> RuleSet | None:
    """Return one of the project's rule sets by number, or None."""
    return RuleSet.objects.filter(project_id=project.pk, number=number).first()
