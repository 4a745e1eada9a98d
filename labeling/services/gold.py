"""Gold questions in bulk: promote examples whose label is already settled to known-answer checks."""

from __future__ import annotations

import random
from typing import Any

from django.db import transaction

from labeling.models import (
    LIVE_STATUSES,
    Annotation,
    AnnotationKind,
    Example,
    Label,
    Project,
)

from .annotations import gold_set

MAX_PROMOTE = 500
ERROR_PROMOTE_COUNT = f"Promote between 1 and {MAX_PROMOTE} examples at a time."


def gold_candidate_labels(*, project: Project) -> dict[int, int]:
    """Return the settled label of each example that may become gold: example id to label id.

    An accepted adjudication wins; otherwise the imported labels must all agree. Examples that are gold
    already are left out.
    """
    rows = (
        Annotation.objects.filter(
            example__project_id=project.pk,
            kind__in=(AnnotationKind.IMPORTED, AnnotationKind.ADJUDICATED, AnnotationKind.GOLD),
            status__in=LIVE_STATUSES,
        )
        .order_by("example_id", "id")
        .values_list("example_id", "kind", "label_id")
    )
    adjudicated: dict[int, int] = {}
    imported: dict[int, set[int]] = {}
    gold: set[int] = set()
    for example_id, kind, label_id in rows:
        if kind == AnnotationKind.GOLD:
            gold.add(example_id)
        elif kind == AnnotationKind.ADJUDICATED:
            adjudicated[example_id] = label_id
        else:
            imported.setdefault(example_id, set()).add(label_id)
    candidates = {example_id: next(iter(ids)) for example_id, ids in imported.items() if len(ids) == 1}
    candidates.update(adjudicated)
    return {example_id: label_id for example_id, label_id in candidates.items() if example_id not in gold}


def gold_promote(*, project: Project, user: Any, count: int, seed: int | None = None) -> int:
    """Make `count` randomly chosen examples with a settled label gold questions with that label; return how many.

    Fewer are promoted when fewer qualify (see `gold_candidate_labels`). A seed makes the choice repeatable.
    """
    if not 1 <= count <= MAX_PROMOTE:
        raise ValueError(ERROR_PROMOTE_COUNT)
    candidates = gold_candidate_labels(project=project)
    chosen = random.Random(seed).sample(sorted(candidates), min(count, len(candidates)))
    labels = Label.objects.filter(project_id=project.pk).in_bulk()
    with transaction.atomic():
        examples = Example.objects.in_bulk(chosen)
        for example_id in chosen:
            gold_set(user=user, example=examples[example_id], label=labels[candidates[example_id]])
    return len(chosen)
