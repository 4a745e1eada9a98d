"""Computing the next queue slice with the cascade: score the pool from stored features, ask every source, blend.

A plan loads the project's ready examples (the pool) and its labels, scores them with the ranking model from
stored features (never recomputing what the feature store holds), asks each candidate source for its best
items and blends them by the project's quotas. Before any model exists (a cold start) the slice is
exploration, stratified by a metadata field when the data has one, plus the items an LLM was least sure about.
Nothing is written here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from labeling.models import Example, Label, Project
from labeling.project_settings import labeling_settings_get
from labeling.services import SliceItem
from models_app.ml import candidates as sources
from models_app.ml.cascade import blend
from models_app.ml.timesplit import normalize_text
from models_app.ml.training import load_artifact, predict_proba
from models_app.models import FeatureSet, ModelVersion, ModelVersionStatus
from models_app.project_settings import queue_settings_get

from .features import FeatureMatrix, feature_set_get_or_create, features_compute, features_load, featurizer_build
from .queue_inputs import (
    STRATA_SAMPLE,
    feedback_positions,
    labeled_rows,
    llm_opinions,
    out_of_fold,
    pool_ids,
    strata_values,
    vector_lookup,
)

SEED = 0
# Rows scored per predict_proba call, so a 1M pool never needs two copies of its probabilities' temporaries.
SCORE_CHUNK = 100_000
# Hard negatives' neighbours are searched in a random sample of at most this many pool rows.
NEIGHBOUR_POOL_MAX = 200_000
# Each source proposes up to this many times its slots, so filtering can drop some and still fill the slice.
PROPOSE_FACTOR = 3
MESSAGE_LOADING = "Loading the {pool:,} ready examples and the labels."
MESSAGE_FEATURES = "Computing features for examples without stored vectors."
MESSAGE_SCORING = "Scoring {pool:,} ready examples with model v{number}."
MESSAGE_CROSS_VALIDATING = "Checking {labels:,} labels out of fold for hard negatives and possible label errors."
MESSAGE_BLENDING = "Blending the sources into {size:,} items."
REASON_LLM_UNSURE = "LLM unsure: it said {label} with confidence {confidence:.2f}"
REASON_FEEDBACK = "Feedback: a production prediction the model was unsure about ({confidence:.2f})"


@dataclass
class Plan:
    """A computed slice, ready to write, with what each stage saw and took."""

    items: list[SliceItem]
    curriculum: list[tuple[int, float]]
    pool_size: int
    model: ModelVersion | None
    composition: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def ranking_model_get(*, project: Project) -> ModelVersion | None:
    """Return the model that ranks the queue: the published version, else the newest trained one.

    Before anything is published, even a version the gate rejected (often for a holdout still too small to judge)
    knows more about where it is unsure than random order does, so it ranks the queue; it never serves.
    """
    versions = ModelVersion.objects.filter(project=project).exclude(artifact_path="")
    published = versions.filter(status=ModelVersionStatus.PUBLISHED).first()
    if published is not None:
        return published
    ranked = (ModelVersionStatus.EVALUATED, ModelVersionStatus.REJECTED)
    return versions.filter(status__in=ranked).order_by("-number").first()


def queue_plan(*, project: Project, step: Callable[[float, str], None] | None = None) -> Plan:
    """Compute the project's next queue slice (nothing is written)."""
    step = step or (lambda progress, message: None)
    queue_settings = queue_settings_get(project)
    labeling = labeling_settings_get(project)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(timings.get(name, 0.0) + now - clock, 4)
        clock = now

    rng = np.random.default_rng()
    pool = pool_ids(project)
    labels = list(Label.objects.filter(project=project).order_by("order", "name").values_list("name", flat=True))
    label_index = {name: i for i, name in enumerate(labels)}
    step(0.05, MESSAGE_LOADING.format(pool=len(pool)))
    lap("pool")
    model_version = ranking_model_get(project=project)
    quotas = queue_settings.quotas()
    slots_hint = {name: math.ceil(queue_settings.slice_size * share) * PROPOSE_FACTOR for name, share in quotas.items()}
    proposals: list[sources.Candidates] = []
    matrix: FeatureMatrix | None = None
    labeled_matrix: FeatureMatrix | None = None
    curriculum: list[tuple[int, float]] = []
    pool_proba: np.ndarray | None = None

    if model_version is not None and len(labels) >= 2:
        feature_set = FeatureSet.objects.filter(project=project, version=model_version.feature_version).first()
        if feature_set is None:
            featurizer = featurizer_build(
                name=model_version.featurizer, params=model_version.params.get("featurizer_params")
            )
            feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)
        step(0.1, MESSAGE_FEATURES)
        features_compute(feature_set=feature_set)
        lap("features_compute")
        model = load_artifact(Path(settings.ARTIFACT_DIR) / model_version.artifact_path, model_version.artifact_sha256)
        lap("model_load")
        matrix = features_load(feature_set=feature_set, example_ids=pool)
        lap("features_load")
        step(0.25, MESSAGE_SCORING.format(pool=len(matrix), number=model_version.number))
        pool_proba = (
            np.vstack(
                [
                    predict_proba(model, matrix.matrix[start : start + SCORE_CHUNK], labels)
                    for start in range(0, len(matrix), SCORE_CHUNK)
                ]
            )
            if len(matrix)
            else np.zeros((0, len(labels)))
        )
        lap("score")
        pool = matrix.ids  # examples without vectors (none after features_compute) cannot be scored
        if len(pool):
            score = sources.uncertainty_score(pool_proba, queue_settings.uncertainty)
            keep = np.argsort(-score, kind="stable")[: slots_hint["uncertain"]]
            found = sources.uncertainty(pool_proba[keep], labels, method=queue_settings.uncertainty)
            proposals.append(_to_ids(found, pool[keep]))
            feedback = feedback_positions(project, pool)
            if len(feedback):
                fb = sources.uncertainty(pool_proba[feedback], labels, method=queue_settings.uncertainty)
                proposals.append(
                    sources.Candidates(
                        "feedback",
                        pool[feedback][fb.index],
                        fb.score,
                        tuple(
                            REASON_FEEDBACK.format(confidence=float(pool_proba[feedback][i].max())) for i in fb.index
                        ),
                    ).top(slots_hint["feedback"])
                )
            lap("uncertainty")
        labeled = labeled_rows(project, label_index)
        wants_cv = quotas["hard_negative"] > 0 or quotas["label_error"] > 0
        if wants_cv and len(labeled.ids) >= 10:
            labeled_matrix = features_load(feature_set=feature_set, example_ids=labeled.ids)
            keep = np.isin(labeled.ids, labeled_matrix.ids)
            ids, given, reviewable = labeled.ids[keep], labeled.given[keep], labeled.reviewable[keep]
            X_labeled = labeled_matrix.rows_for(ids)
            step(0.45, MESSAGE_CROSS_VALIDATING.format(labels=len(ids)))
            oof = out_of_fold(X_labeled, given, labels, sparse=feature_set.sparse, model=model)
            lap("cross_validate")
            if quotas["hard_negative"] > 0 and len(pool):
                errors = sources.model_errors(oof, given, labels)
                sample = np.arange(len(pool))
                if len(pool) > NEIGHBOUR_POOL_MAX:
                    sample = np.sort(rng.choice(len(pool), size=NEIGHBOUR_POOL_MAX, replace=False))
                found = sources.hard_negatives(errors, X_labeled, matrix.matrix[sample])
                proposals.append(_to_ids(found.top(slots_hint["hard_negative"]), pool[sample]))
                lap("hard_negatives")
            if quotas["label_error"] > 0:
                issues = sources.label_issues(oof, given, labels)
                mask = reviewable[issues.index]
                issues = sources.Candidates(
                    issues.source,
                    issues.index[mask],
                    issues.score[mask],
                    tuple(reason for reason, ok in zip(issues.reason, mask, strict=True) if ok),
                )
                proposals.append(_to_ids(issues.top(slots_hint["label_error"]), ids))
                lap("label_issues")
        if len(pool):
            llm = llm_opinions(project, pool, label_index)
            if llm is not None:
                positions, other, confidence = llm
                other_full = np.full(len(pool), -1, dtype=np.int64)
                conf_full = np.zeros(len(pool))
                other_full[positions], conf_full[positions] = other, confidence
                found = sources.disagreement(pool_proba, other_full, conf_full, labels)
                proposals.append(_to_ids(found.top(slots_hint["llm_disagrees"]), pool))
                # Where the LLM agrees with the model but is itself unsure, people should look first too.
                proposals.append(_llm_unsure(pool, positions, other, confidence, labels, slots_hint["llm_disagrees"]))
            if labeling.curriculum_items:
                ease = sources.curriculum_ease(pool_proba)
                easiest = np.argsort(-ease, kind="stable")[: min(len(pool), labeling.curriculum_items * 5)]
                curriculum = [(int(pool[i]), float(ease[i])) for i in easiest]
            lap("other_sources")
    else:
        llm = llm_opinions(project, pool, label_index) if len(pool) else None
        if llm is not None:
            positions, other, confidence = llm
            unsure = _llm_unsure(pool, positions, other, confidence, labels, slots_hint["uncertain"])
            proposals.append(sources.Candidates("uncertain", unsure.index, unsure.score, unsure.reason))
        lap("cold_start")

    # Enough to fill the whole slice: exploration takes the slots of sources that have nothing to propose.
    exploration_size = min(len(pool), slots_hint["exploration"] + queue_settings.slice_size)
    strata_field = None
    if exploration_size:
        sample = rng.choice(len(pool), size=min(len(pool), max(exploration_size * 20, STRATA_SAMPLE)), replace=False)
        found_strata = strata_values(project, pool[sample], queue_settings.stratify_by)
        if found_strata is not None:
            strata_field, values = found_strata
            found = sources.exploration(len(sample), exploration_size, rng, strata=values)
        else:
            found = sources.exploration(len(sample), exploration_size, rng)
        proposals.append(_to_ids(found, pool[sample]))
        lap("exploration")

    candidate_ids = np.unique(np.concatenate([c.index for c in proposals])) if proposals else np.zeros(0, np.int64)
    texts = dict(Example.objects.filter(pk__in=candidate_ids.tolist()).values_list("pk", "text"))
    text_keys = {pk: normalize_text(text) for pk, text in texts.items()}
    vectors = vector_lookup([m for m in (matrix, labeled_matrix) if m is not None]) if matrix is not None else None
    step(0.8, MESSAGE_BLENDING.format(size=queue_settings.slice_size))
    result = blend(
        proposals,
        size=queue_settings.slice_size,
        quotas=quotas,
        text_keys=text_keys,
        vectors=vectors,
        near_duplicate=queue_settings.near_duplicate,
    )
    lap("blend")
    items = [
        SliceItem(example_id=pick.example_id, reason_code=pick.source, reason=pick.reason, score=pick.score)
        for pick in result.picks
    ]
    picked_ids = {item.example_id for item in items}
    curriculum = [(example_id, ease) for example_id, ease in curriculum if example_id not in picked_ids]
    curriculum = curriculum[: labeling.curriculum_items * 5]
    composition = {
        "proposed": result.proposed,
        "slots": result.slots,
        "picked": result.picked,
        "dropped": {
            "contested": result.dropped_contested,
            "duplicates": result.dropped_duplicates,
            "near_duplicates": result.dropped_near_duplicates,
        },
        "quotas": quotas,
        "uncertainty": queue_settings.uncertainty,
        "strata_field": strata_field,
        "curriculum": len(curriculum),
        "cold_start": model_version is None,
    }
    return Plan(
        items=items,
        curriculum=curriculum,
        pool_size=int(len(pool)),
        model=model_version,
        composition=composition,
        timings=timings,
    )


def _llm_unsure(
    pool: np.ndarray, positions: np.ndarray, other: np.ndarray, confidence: np.ndarray, labels: list[str], limit: int
) -> sources.Candidates:
    """The examples the LLM was least sure about (score 1 - its confidence), as an llm_disagrees proposal."""
    order = np.argsort(confidence, kind="stable")[:limit]
    return sources.Candidates(
        "llm_disagrees",
        pool[positions[order]],
        1.0 - confidence[order],
        tuple(REASON_LLM_UNSURE.format(label=labels[other[i]], confidence=confidence[i]) for i in order),
    )


def _to_ids(found: sources.Candidates, ids: np.ndarray) -> sources.Candidates:
    """Map a source's positions to example ids."""
    return sources.Candidates(found.source, ids[found.index], found.score, found.reason)
