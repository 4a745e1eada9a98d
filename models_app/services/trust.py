"""How far an LLM labeler can be trusted here: its labels against people's on the same examples.

For each example with both a suggestion from the labeler and a standing human label (a gold or adjudicated answer
wins over other human labels; a reviewer's correction is a human label), the suggestion counts as right or wrong.
`models_app.ml.trust` turns those into precision against confidence, kappa, and the threshold at which accepted
labels are at least the project's target precision by a lower confidence bound.
"""

from __future__ import annotations

from typing import Any

from labeling.models import HUMAN_KINDS, LIVE_STATUSES, Annotation, AnnotationKind, Project
from models_app.ml.trust import TrustReport, auto_accept_preview, trust_report
from models_app.project_settings import llm_settings_get

_FINAL = (AnnotationKind.GOLD, AnnotationKind.ADJUDICATED)


def trust_pairs(*, project: Project, labeler: str) -> tuple[list[str], list[float], list[str]]:
    """Return (LLM label, confidence, human label) for every example both labeled (the labeler's newest suggestion)."""
    suggestions: dict[int, tuple[str, float]] = {}
    rows = (
        Annotation.objects.filter(example__project=project, kind=AnnotationKind.LLM, labeler_name=labeler)
        .exclude(confidence__isnull=True)
        .order_by("id")
        .values_list("example_id", "label__name", "confidence")
    )
    for example_id, label, confidence in rows.iterator(chunk_size=5000):
        suggestions[example_id] = (label, float(confidence))
    human: dict[int, tuple[bool, str]] = {}
    people = (
        Annotation.objects.filter(example_id__in=list(suggestions), kind__in=HUMAN_KINDS, status__in=LIVE_STATUSES)
        .order_by("id")
        .values_list("example_id", "label__name", "kind")
    )
    for example_id, label, kind in people.iterator(chunk_size=5000):
        final = kind in _FINAL
        held = human.get(example_id)
        if held is None or final or not held[0]:
            human[example_id] = (final or (held[0] if held else False), label)
    llm_labels, confidence, human_labels = [], [], []
    for example_id, (_, label) in human.items():
        suggested, conf = suggestions[example_id]
        llm_labels.append(suggested)
        confidence.append(conf)
        human_labels.append(label)
    return llm_labels, confidence, human_labels


def trust_get(*, project: Project, labeler: str) -> TrustReport | None:
    """Measure the labeler against people at the project's target precision; None before any overlap."""
    llm_labels, confidence, human_labels = trust_pairs(project=project, labeler=labeler)
    if not llm_labels:
        return None
    target = llm_settings_get(project).target_precision
    return trust_report(llm_labels, confidence, human_labels, target=target)


def trust_preview(*, project: Project, labeler: str, report: TrustReport) -> dict[str, Any]:
    """What auto-accept would do now to the labeler's pending labels."""
    pending = list(
        Annotation.objects.filter(
            example__project=project, kind=AnnotationKind.LLM, labeler_name=labeler, status="pending"
        ).values_list("label__name", "confidence")
    )
    return auto_accept_preview(report, [p[0] for p in pending], [float(p[1] or 0.0) for p in pending])
