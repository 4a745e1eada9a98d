"""Builders for dashboard tests: labels of any provenance at a chosen time, model versions with gate decisions,
and a project with something in every chart."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from labeling.models import (
    Annotation,
    AnnotationKind,
    AnnotationStatus,
    Example,
    JobState,
    Label,
    Project,
    QueueItem,
    QueueReason,
    QueueState,
)
from models_app.models import (
    Deployment,
    FeaturizerName,
    GateDecision,
    ModelVersion,
    ModelVersionStatus,
    PredictionLog,
    QueueBuild,
    QueueBuildTrigger,
)
from tests.models_app.factories import examples_create


def label_add(
    example: Example,
    label: Label,
    *,
    kind: str = AnnotationKind.HUMAN,
    status: str = AnnotationStatus.SUBMITTED,
    at: datetime | None = None,
    author: Any = None,
    labeler: str = "",
    **extra: Any,
) -> Annotation:
    """Store one label of any provenance; labels without an author get a labeler name."""
    return Annotation.objects.create(
        example=example,
        label=label,
        kind=kind,
        status=status,
        author=author,
        labeler_name=labeler or ("" if author is not None else f"{kind}-labeler"),
        created_at=at or timezone.now(),
        **extra,
    )


def version_add(
    project: Project,
    number: int,
    *,
    status: str = ModelVersionStatus.EVALUATED,
    macro_f1: float | None = 0.8,
    accuracy: float | None = 0.85,
    holdout_size: int = 40,
    trained_at: datetime | None = None,
    gate: bool | None = None,
    reason: str = "",
    overridden: bool = False,
) -> ModelVersion:
    """Store a trained version with its holdout scores and, when `gate` is given, one gate decision."""
    metrics = {} if macro_f1 is None else {"macro_f1": macro_f1, "accuracy": accuracy, "per_class": {"x": {}}}
    version = ModelVersion.objects.create(
        project=project,
        number=number,
        featurizer=FeaturizerName.HASHING,
        feature_version="hashing-test",
        algorithm="logreg",
        metrics=metrics,
        holdout={"size": holdout_size, "share": 0.2},
        status=status,
        trained_at=trained_at or timezone.now() - timedelta(hours=10 - number),
    )
    if gate is not None:
        now = timezone.now()
        GateDecision.objects.create(
            project=project,
            model_version=version,
            passed=gate,
            reasons=[reason or ("Macro-F1 did not drop." if gate else "Macro-F1 dropped by 0.05."), "Second check."],
            overridden_at=now if overridden else None,
            override_reason="The holdout is too small to judge." if overridden else "",
        )
    return version


def queue_items_add(project: Project, examples: list[Example], reason: str, state: str = QueueState.READY, owner=None):
    """Queue one slot per example for `reason`; leased and done slots belong to `owner`."""
    now = timezone.now()
    items = []
    for example in examples:
        item = QueueItem(project=project, example=example, reason_code=reason, reason=f"Because {reason}", state=state)
        if state != QueueState.READY:
            item.lease_owner = owner
            item.lease_id = uuid.uuid4() if state == QueueState.LEASED else None
            item.lease_expires_at = now + timedelta(minutes=5) if state == QueueState.LEASED else None
            item.done_at = now if state == QueueState.DONE else None
        items.append(item)
    return QueueItem.objects.bulk_create(items)


def busy_project(project: Project, annotators: list[Any], reviewer: Any, *, versions: int = 3) -> None:
    """Give the project something for every chart: labels of each provenance over several days, a ranked queue
    with a rebuild, model versions through the gate with one published, reviewed LLM labels and predictions."""
    now = timezone.now()
    labels = list(project.labels.order_by("name"))
    examples = examples_create(project, [f"comment number {n} about the video" for n in range(60)])
    for n, example in enumerate(examples[:30]):
        author = annotators[n % len(annotators)]
        at = now - timedelta(days=n % 6, hours=n % 3)
        label_add(example, labels[n % 2], author=author, at=at, seconds_spent=4.0 + n % 5)
    label_add(examples[30], labels[0], kind=AnnotationKind.IMPORTED, at=now - timedelta(days=2))
    label_add(examples[31], labels[1], kind=AnnotationKind.GOLD, status=AnnotationStatus.ACCEPTED, author=reviewer)
    for n, example in enumerate(examples[32:40]):
        auto = n < 2
        status = AnnotationStatus.ACCEPTED if n < 5 else AnnotationStatus.REJECTED
        label_add(
            example,
            labels[n % 2],
            kind=AnnotationKind.LLM,
            status=status,
            labeler="smollm2",
            auto_accepted=auto and status == AnnotationStatus.ACCEPTED,
            reviewed_by=None if auto else reviewer,
            reviewed_at=now - timedelta(days=n % 3),
            at=now - timedelta(days=3),
        )
    for example in examples[40:44]:
        label_add(example, labels[0], kind=AnnotationKind.LLM, status=AnnotationStatus.PENDING, labeler="smollm2")
    queue_items_add(project, examples[44:52], QueueReason.UNCERTAIN)
    queue_items_add(project, examples[52:56], QueueReason.EXPLORATION)
    queue_items_add(project, examples[56:58], QueueReason.HARD_NEGATIVE)
    QueueBuild.objects.create(
        project=project,
        trigger=QueueBuildTrigger.MODEL,
        state=JobState.SUCCEEDED,
        progress=1.0,
        model_number=1,
        composition={"ready_by_reason": {"uncertain": 10, "exploration": 6}},
        finished_at=now - timedelta(days=1),
    )
    published = None
    for number in range(1, versions + 1):
        passed = number % 3 != 2
        version = version_add(
            project,
            number,
            status=ModelVersionStatus.RETIRED if passed else ModelVersionStatus.REJECTED,
            macro_f1=0.6 + number / 100,
            accuracy=0.7 + number / 100,
            gate=passed,
            trained_at=now - timedelta(days=versions - number),
        )
        if passed:
            published = version
    if published is not None:
        ModelVersion.objects.filter(pk=published.pk).update(status=ModelVersionStatus.PUBLISHED)
        Deployment.objects.create(project=project, model_version=published)
        for days_ago in range(3):
            PredictionLog.objects.create(
                project=project,
                model_version=published,
                model_number=published.number,
                count=20 + days_ago,
                abstained=days_ago,
                low_confidence=2 + days_ago,
                duration_ms=12.5,
                created_at=now - timedelta(days=days_ago),
            )
