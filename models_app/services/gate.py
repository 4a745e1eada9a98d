"""Run the evaluate-before-deploy gate on a new model version and record its decision."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from django.db import transaction

from models_app.ml.gate import GateSettings, Scored, gate_decide
from models_app.ml.rules import RuleError, apply_rules_arrays, compile_rules
from models_app.ml.training import ArtifactError
from models_app.models import Deployment, GateDecision, ModelVersion, ModelVersionStatus, RuleSet
from models_app.project_settings import serving_settings_get

from .feature_shards import FeatureStoreError
from .scoring import ERROR_NO_SPLIT, holdout_load, model_labels, split_load, version_proba

logger = logging.getLogger(__name__)
ERROR_NO_HOLDOUT = "Model v{number} has no recorded holdout, so the gate cannot compare it."
NOTE_FULL_HOLDOUT = " Its whole holdout was used."
MESSAGE_PASSED = "Passed the gate."
ERROR_GATE_FAILED = "The gate could not compare the models: {problem}"


def deployment_get(*, project_id: int) -> Deployment | None:
    """Return the project's published (model version, rule set), or None before the first publish."""
    return Deployment.objects.select_related("model_version", "rule_set").filter(project_id=project_id).first()


def rule_specs(rule_set: RuleSet | None) -> list[dict[str, Any]]:
    """Return a rule set's rules in order, in the form the rules engine compiles."""
    if rule_set is None:
        return []
    return [rule.as_spec() for rule in rule_set.rules.order_by("position")]


def model_version_gate(*, version: ModelVersion) -> GateDecision:
    """Compare the version with the published one on a shared holdout and store the verdict; reject it on failure.

    The shared holdout is the version's time-split holdout minus every example the published version trained on
    (the version itself never trains on its holdout). The rules that serve now run on top of the candidate.
    """
    deployment = deployment_get(project_id=version.project_id)
    published = deployment.model_version if deployment and deployment.model_version_id != version.pk else None
    rule_set = deployment.rule_set if deployment else None
    try:
        return _judge(version, published, rule_set)
    except (ArtifactError, RuleError, FeatureStoreError) as exc:
        # A file that cannot be trusted or rules that no longer fit: the candidate cannot be judged, so it is
        # rejected with the reason and the published version keeps serving.
        logger.exception("model version %s: the gate could not run", version.pk)
        return _record(version, published, rule_set, None, notes=[ERROR_GATE_FAILED.format(problem=exc)])


def _judge(version: ModelVersion, published: ModelVersion | None, rule_set: RuleSet | None) -> GateDecision:
    serving = serving_settings_get(version.project)
    notes: list[str] = []
    exclude = None
    if published is not None:
        record = split_load(published)
        if record is None:
            notes.append(ERROR_NO_SPLIT.format(number=published.number) + NOTE_FULL_HOLDOUT)
        else:
            exclude = np.asarray(record.train_ids, dtype=np.int64)
    holdout = holdout_load(version, exclude=exclude)
    settings = GateSettings(
        tolerance=serving.gate_tolerance, recall_drop=serving.gate_recall_drop, min_holdout=serving.gate_min_holdout
    )
    if holdout is None:
        return _record(version, published, rule_set, None, notes=[ERROR_NO_HOLDOUT.format(number=version.number)])
    labels = list(model_labels(version))
    if published is not None:
        labels += [name for name in model_labels(published) if name not in labels]
    labels += sorted(set(holdout.y_true) - set(labels))
    majority = (version.training_counts or {}).get("majority_label") or labels[0]
    if majority not in labels:
        labels.append(majority)
    size = len(holdout.y_true)
    empty = np.zeros((0, len(labels)))
    mine = version_proba(version, holdout.example_ids, holdout.texts, labels) if size else empty
    candidate = Scored([labels[i] for i in mine.argmax(axis=1).tolist()], mine)
    theirs_scored = None
    if published is not None:
        theirs = version_proba(published, holdout.example_ids, holdout.texts, labels) if size else empty
        theirs_scored = Scored([labels[i] for i in theirs.argmax(axis=1).tolist()], theirs)
    with_rules = None
    specs = rule_specs(rule_set)
    if specs and size:
        compiled = compile_rules(specs, labels)
        predicted, abstained, _ = apply_rules_arrays(compiled, holdout.texts, holdout.metas, mine, labels)
        with_rules = Scored([str(label) for label in predicted], mine, answered=~np.asarray(abstained, dtype=bool))
    result = gate_decide(
        y_true=holdout.y_true,
        labels=labels,
        majority=majority,
        candidate=candidate,
        published=theirs_scored,
        published_number=published.number if published is not None else None,
        candidate_with_rules=with_rules,
        settings=settings,
    )
    comparison = {**result.comparison, "notes": notes, "excluded_trained_by_published": holdout.excluded}
    return _record(version, published, rule_set, result, notes=notes, comparison=comparison)


def _record(
    version: ModelVersion,
    published: ModelVersion | None,
    rule_set: RuleSet | None,
    result: Any,
    *,
    notes: list[str],
    comparison: dict[str, Any] | None = None,
) -> GateDecision:
    """Store the decision and move a failed candidate to rejected, with the first failed reason."""
    passed = bool(result is not None and result.passed)
    reasons = (result.reasons if result is not None else []) + notes
    with transaction.atomic():
        decision = GateDecision.objects.create(
            project_id=version.project_id,
            model_version=version,
            against=published,
            rule_set=rule_set,
            passed=passed,
            reasons=reasons,
            checks=result.checks_as_dicts() if result is not None else [],
            comparison=comparison or {},
        )
        if not passed and version.status == ModelVersionStatus.EVALUATED:
            ModelVersion.objects.filter(pk=version.pk).update(
                status=ModelVersionStatus.REJECTED, status_reason=reasons[0] if reasons else ""
            )
            version.status = ModelVersionStatus.REJECTED
            version.status_reason = reasons[0] if reasons else ""
        elif passed:
            main = next((check.detail for check in result.checks if check.name == "macro_f1"), "")
            ModelVersion.objects.filter(pk=version.pk).update(status_reason=f"{MESSAGE_PASSED} {main}".strip())
    return decision
