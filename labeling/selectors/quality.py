"""Reads for reviewers: agreement between annotators, each annotator's output and accuracy, conflicts, gold.

Every live human label of a project is fetched once as plain tuples; agreement math runs in
`models_app.ml.agreement`, the grouping here, so a report costs a fixed handful of queries.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, time

from django.contrib.auth import get_user_model
from django.db.models import Count
from django.utils import timezone

from labeling.models import (
    LIVE_STATUSES,
    Annotation,
    AnnotationEvent,
    AnnotationEventKind,
    AnnotationKind,
    AnnotationStatus,
    Example,
    Label,
    Project,
)
from models_app.ml.agreement import AlphaResult, krippendorff_alpha_nominal, pairwise_kappa

CONFLICTS_SHOWN = 50
MIN_SECONDS_PER_LABEL = 1.0
# Krippendorff (Content Analysis, 2004, ch. 11.4): rely on alpha >= .800; draw tentative conclusions from
# .667 <= alpha < .800; discard data below .667.
ALPHA_RELIABLE = 0.8
ALPHA_TENTATIVE = 0.667
READING_NO_DATA = "Not measured yet: agreement needs examples that two or more annotators labeled."
READING_NO_VARIATION = (
    "Not defined: every label on the shared examples is the same, so there is no variation to measure."
)
READING_RELIABLE = "Reliable: annotators agree well beyond chance, so these labels can be trusted."
READING_TENTATIVE = (
    "Tentative: agreement is fair but below the 0.8 Krippendorff recommends; treat conclusions as provisional "
    "and look at the conflicts and label descriptions."
)
READING_UNRELIABLE = (
    "Unreliable: annotators agree too little beyond chance (below 0.667); the label definitions or the "
    "instructions likely need work before these labels are used."
)


@dataclass(frozen=True)
class HumanLabel:
    """One standing label by a person, as fetched for the quality report."""

    example_id: int
    author_id: int
    label_id: int
    created_at: datetime
    seconds_spent: float | None


@dataclass(frozen=True)
class PairRow:
    """Cohen's kappa of two annotators over the examples both labeled."""

    annotator_a: str
    annotator_b: str
    n_items: int
    observed: float
    kappa: float | None

    @property
    def observed_percent(self) -> float:
        return round(self.observed * 100, 1)

    @property
    def level(self) -> str:
        return _level(self.kappa)


@dataclass(frozen=True)
class Agreement:
    """Krippendorff's alpha for the project, its plain-English reading and the kappa of every pair."""

    alpha: AlphaResult
    reading: str
    level: str
    pairs: list[PairRow]

    @property
    def alpha_position(self) -> float:
        """Place alpha on the page's 0-to-1 gauge, in percent; values below 0 sit at its left end."""
        return 0.0 if self.alpha.alpha is None else round(min(max(self.alpha.alpha, 0.0), 1.0) * 100, 1)


@dataclass(frozen=True)
class AnnotatorStats:
    """What one annotator did in the project and how well it matched the gold answers."""

    user_id: int
    username: str
    labels: int
    labels_today: int
    gold_answered: int
    gold_correct: int
    median_seconds: float | None
    mean_seconds: float | None
    skips: int
    undos: int

    @property
    def gold_accuracy_percent(self) -> float | None:
        return round(100 * self.gold_correct / self.gold_answered, 1) if self.gold_answered else None

    @property
    def labels_per_active_hour(self) -> float | None:
        """Return 3600 over the mean seconds per timed label: the pace while actually labeling.

        A label is taken to cost at least one second, so scripted clients that answer instantly do not show
        millions per hour.
        """
        return round(3600 / max(self.mean_seconds, MIN_SECONDS_PER_LABEL), 1) if self.mean_seconds is not None else None


@dataclass(frozen=True)
class Vote:
    username: str
    label: str


@dataclass(frozen=True)
class Conflict:
    """An example whose annotators disagree and that no reviewer has settled yet."""

    example_id: int
    text: str
    votes: list[Vote]
    # Every label of the project, in display order, as (label id, name, how many annotators chose it).
    choices: list[tuple[int, str, int]]
    last_labeled_at: datetime


@dataclass(frozen=True)
class ConflictSummary:
    """How many examples have two or more labels, how many of them agree, disagree, or were settled."""

    shared: int
    agreed: int
    open: int
    resolved: int
    gold: int


@dataclass(frozen=True)
class QualityReport:
    agreement: Agreement
    annotators: list[AnnotatorStats]
    conflicts: list[Conflict]
    summary: ConflictSummary
    labels: list[Label]


def human_label_list(*, project: Project) -> list[HumanLabel]:
    """Return every live label people gave in the project (kind `human`), oldest first, in one query."""
    rows = (
        Annotation.objects.filter(
            example__project_id=project.pk, kind=AnnotationKind.HUMAN, status__in=LIVE_STATUSES, author__isnull=False
        )
        .order_by("id")
        .values_list("example_id", "author_id", "label_id", "created_at", "seconds_spent")
    )
    return [HumanLabel(*row) for row in rows]


def _settled(*, project: Project) -> tuple[dict[int, int], set[int]]:
    """Return the accepted gold label per example and the examples that carry an accepted adjudication."""
    gold: dict[int, int] = {}
    adjudicated: set[int] = set()
    rows = Annotation.objects.filter(
        example__project_id=project.pk,
        kind__in=(AnnotationKind.GOLD, AnnotationKind.ADJUDICATED),
        status=AnnotationStatus.ACCEPTED,
    ).values_list("example_id", "kind", "label_id")
    for example_id, kind, label_id in rows:
        if kind == AnnotationKind.GOLD:
            gold[example_id] = label_id
        else:
            adjudicated.add(example_id)
    return gold, adjudicated


def _usernames(user_ids: set[int]) -> dict[int, str]:
    user_model = get_user_model()
    rows = user_model.objects.filter(pk__in=user_ids).values_list("pk", user_model.USERNAME_FIELD)
    return dict(rows)


def _level(value: float | None) -> str:
    if value is None:
        return "none"
    if value >= ALPHA_RELIABLE:
        return "good"
    return "warn" if value >= ALPHA_TENTATIVE else "bad"


def alpha_reading(alpha: AlphaResult) -> str:
    """Say in one sentence what the alpha value means, by Krippendorff's own thresholds."""
    if alpha.alpha is None:
        return READING_NO_VARIATION if alpha.n_items else READING_NO_DATA
    if alpha.alpha >= ALPHA_RELIABLE:
        return READING_RELIABLE
    return READING_TENTATIVE if alpha.alpha >= ALPHA_TENTATIVE else READING_UNRELIABLE


def _agreement(labels: list[HumanLabel], names: dict[int, str]) -> Agreement:
    triples = [(label.example_id, label.author_id, label.label_id) for label in labels]
    alpha = krippendorff_alpha_nominal(triples)
    pairs = [
        PairRow(
            annotator_a=names.get(pair.annotator_a, f"user {pair.annotator_a}"),
            annotator_b=names.get(pair.annotator_b, f"user {pair.annotator_b}"),
            n_items=pair.n_items,
            observed=pair.observed,
            kappa=pair.kappa,
        )
        for pair in pairwise_kappa(triples)
    ]
    return Agreement(alpha=alpha, reading=alpha_reading(alpha), level=_level(alpha.alpha), pairs=pairs)


def _local_midnight(now: datetime) -> datetime:
    local = timezone.localtime(now)
    return timezone.make_aware(datetime.combine(local.date(), time.min), local.tzinfo)


def _event_counts(*, project: Project) -> dict[int, Counter[str]]:
    """Count each person's skips and undos in the project, by event kind."""
    rows = (
        AnnotationEvent.objects.filter(
            project_id=project.pk,
            kind__in=(AnnotationEventKind.SKIP, AnnotationEventKind.UNDO),
            actor__isnull=False,
        )
        .order_by()
        .values_list("actor_id", "kind")
        .annotate(n=Count("id"))
    )
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for actor_id, kind, n in rows:
        counts[actor_id][kind] += n
    return counts


def _annotator_stats(
    *,
    labels: list[HumanLabel],
    gold: dict[int, int],
    events: dict[int, Counter[str]],
    names: dict[int, str],
    now: datetime,
) -> list[AnnotatorStats]:
    midnight = _local_midnight(now)
    counts: dict[int, Counter[str]] = defaultdict(
        Counter, {user_id: Counter(tally) for user_id, tally in events.items()}
    )
    seconds: dict[int, list[float]] = defaultdict(list)
    for label in labels:
        tally = counts[label.author_id]
        tally["labels"] += 1
        if label.created_at >= midnight:
            tally["today"] += 1
        if label.example_id in gold:
            tally["gold_answered"] += 1
            if gold[label.example_id] == label.label_id:
                tally["gold_correct"] += 1
        if label.seconds_spent is not None:
            seconds[label.author_id].append(label.seconds_spent)
    rows = [
        AnnotatorStats(
            user_id=user_id,
            username=names.get(user_id, f"user {user_id}"),
            labels=tally["labels"],
            labels_today=tally["today"],
            gold_answered=tally["gold_answered"],
            gold_correct=tally["gold_correct"],
            median_seconds=statistics.median(seconds[user_id]) if seconds[user_id] else None,
            mean_seconds=statistics.fmean(seconds[user_id]) if seconds[user_id] else None,
            skips=tally[AnnotationEventKind.SKIP],
            undos=tally[AnnotationEventKind.UNDO],
        )
        for user_id, tally in counts.items()
    ]
    return sorted(rows, key=lambda row: (-row.labels, row.username))


def _conflicts(
    *,
    labels: list[HumanLabel],
    gold: dict[int, int],
    adjudicated: set[int],
    names: dict[int, str],
    project_labels: list[Label],
    limit: int,
) -> tuple[list[Conflict], ConflictSummary]:
    """Group labels by example; an open conflict disagrees and has neither an adjudication nor a gold answer."""
    by_example: dict[int, list[HumanLabel]] = defaultdict(list)
    for label in labels:
        by_example[label.example_id].append(label)
    shared = agreed = resolved = settled_by_gold = 0
    open_ids: list[tuple[datetime, int]] = []
    for example_id, votes in by_example.items():
        if len(votes) < 2:
            continue
        shared += 1
        if len({vote.label_id for vote in votes}) == 1:
            agreed += 1
        elif example_id in adjudicated:
            resolved += 1
        elif example_id in gold:
            settled_by_gold += 1
        else:
            open_ids.append((max(vote.created_at for vote in votes), example_id))
    open_ids.sort(reverse=True)
    shown = open_ids[:limit]
    texts = dict(Example.objects.filter(pk__in=[example_id for _, example_id in shown]).values_list("id", "text"))
    label_names = {label.pk: label.name for label in project_labels}
    conflicts = [
        Conflict(
            example_id=example_id,
            text=texts.get(example_id, ""),
            votes=sorted(
                (
                    Vote(
                        username=names.get(vote.author_id, f"user {vote.author_id}"),
                        label=label_names.get(vote.label_id, "?"),
                    )
                    for vote in by_example[example_id]
                ),
                key=lambda vote: (vote.label, vote.username),
            ),
            choices=_choices(project_labels, [vote.label_id for vote in by_example[example_id]]),
            last_labeled_at=last,
        )
        for last, example_id in shown
    ]
    summary = ConflictSummary(shared=shared, agreed=agreed, open=len(open_ids), resolved=resolved, gold=settled_by_gold)
    return conflicts, summary


def _choices(labels: list[Label], chosen: list[int]) -> list[tuple[int, str, int]]:
    votes = Counter(chosen)
    return [(label.pk, label.name, votes[label.pk]) for label in labels]


def quality_report(*, project: Project, now: datetime | None = None, limit: int = CONFLICTS_SHOWN) -> QualityReport:
    """Return agreement, per-annotator numbers and the newest `limit` open conflicts, in a fixed number of queries."""
    now = now or timezone.now()
    labels = human_label_list(project=project)
    gold, adjudicated = _settled(project=project)
    events = _event_counts(project=project)
    names = _usernames({label.author_id for label in labels} | set(events))
    project_labels = list(Label.objects.filter(project_id=project.pk).order_by("order", "name"))
    conflicts, summary = _conflicts(
        labels=labels,
        gold=gold,
        adjudicated=adjudicated,
        names=names,
        project_labels=project_labels,
        limit=limit,
    )
    return QualityReport(
        agreement=_agreement(labels, names),
        annotators=_annotator_stats(labels=labels, gold=gold, events=events, names=names, now=now),
        conflicts=conflicts,
        summary=summary,
        labels=project_labels,
    )


def conflict_summary(*, project: Project) -> ConflictSummary:
    """Count shared, agreed, open and resolved examples (the counters a settled conflict updates)."""
    gold, adjudicated = _settled(project=project)
    _, summary = _conflicts(
        labels=human_label_list(project=project),
        gold=gold,
        adjudicated=adjudicated,
        names={},
        project_labels=[],
        limit=0,
    )
    return summary


def conflict_get(*, project: Project, example_id: int) -> Conflict | None:
    """Return one example's live human labels as a conflict row (to show it again), or None without labels."""
    votes = list(
        Annotation.objects.filter(
            example__project_id=project.pk,
            example_id=example_id,
            kind=AnnotationKind.HUMAN,
            status__in=LIVE_STATUSES,
            author__isnull=False,
        )
        .select_related("example", "author", "label")
        .order_by("id")
    )
    if not votes:
        return None
    return Conflict(
        example_id=example_id,
        text=votes[0].example.text,
        votes=sorted(
            (Vote(username=vote.author.get_username(), label=vote.label.name) for vote in votes),
            key=lambda vote: (vote.label, vote.username),
        ),
        choices=_choices(
            list(Label.objects.filter(project_id=project.pk).order_by("order", "name")),
            [vote.label_id for vote in votes],
        ),
        last_labeled_at=max(vote.created_at for vote in votes),
    )
