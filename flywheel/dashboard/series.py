"""The flywheel dashboard's reads: labels, queue, model versions, LLM trust, annotators and predictions over time.

Each series is aggregated in the database per local day (`TruncDate` in the current time zone) over a window of
whole days ending today, so the dashboard costs a fixed number of queries whatever the number of labels, model
versions or annotators.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Avg, Count, Exists, OuterRef, Q, Sum
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from labeling.models import (
    HUMAN_KINDS,
    LIVE_STATUSES,
    Annotation,
    AnnotationKind,
    AnnotationStatus,
    JobState,
    Project,
    QueueItem,
    QueueReason,
    QueueState,
)
from models_app.models import Deployment, GateDecision, ModelVersion, ModelVersionStatus, PredictionLog, QueueBuild

DAYS_DEFAULT = 30
DAYS_CHOICES = (7, 30, 90)
TOP_ANNOTATORS = 8
THROUGHPUT_DAYS = 7
VERSIONS_SHOWN = 100
QUEUE_BUILDS_SHOWN = 30
PACE_ROWS_SHOWN = 50
OTHERS = "others"

# Where a label came from, in the order the stacked bars draw them. Human kinds count while their label stands;
# an LLM label counts by its review status.
PROVENANCES: tuple[tuple[str, str], ...] = (
    ("human", "Human"),
    ("imported", "Imported"),
    ("gold", "Gold"),
    ("adjudicated", "Adjudicated"),
    ("llm_reviewed", "LLM, accepted by a reviewer"),
    ("llm_auto", "LLM, auto-accepted"),
    ("llm_pending", "LLM, waiting for review"),
)
STANDING = Q(kind__in=HUMAN_KINDS, status__in=LIVE_STATUSES) | Q(
    kind=AnnotationKind.LLM, status=AnnotationStatus.ACCEPTED
)


@dataclass(frozen=True)
class Window:
    """The whole local days a dashboard covers, oldest first, and the aware instant the first one starts."""

    days: tuple[date, ...]
    start: datetime

    def index(self) -> dict[date, int]:
        return {day: position for position, day in enumerate(self.days)}


@dataclass(frozen=True)
class Dashboard:
    """What the page shows: `charts` goes to the browser as JSON, `tables` and `tiles` are rendered by the server."""

    charts: dict[str, Any]
    tables: dict[str, Any]
    tiles: dict[str, Any]


def window_get(*, days: int = DAYS_DEFAULT, now: datetime | None = None) -> Window:
    """Return the last `days` local days up to today (the current time zone decides where a day starts)."""
    today = timezone.localtime(now or timezone.now()).date()
    first = today - timedelta(days=days - 1)
    return Window(
        days=tuple(first + timedelta(days=offset) for offset in range(days)),
        start=timezone.make_aware(datetime.combine(first, time.min)),
    )


def _spread(window: Window, rows: Iterable[tuple[date, str, int]], keys: Sequence[str]) -> dict[str, list[int]]:
    """Turn (day, key, count) rows into one list per key with a zero for each day without a row."""
    index = window.index()
    series = {key: [0] * len(window.days) for key in keys}
    for day, key, count in rows:
        if day in index and key in series:
            series[key][index[day]] += count
    return series


def _provenance(kind: str, status: str, auto_accepted: bool) -> str:
    if kind != AnnotationKind.LLM:
        return kind
    if status == AnnotationStatus.PENDING:
        return "llm_pending"
    return "llm_auto" if auto_accepted else "llm_reviewed"


def label_series(*, project: Project, window: Window) -> dict[str, list[int]]:
    """Count labels created per day by provenance: people's standing labels, LLM labels by review status."""
    rows = (
        Annotation.objects.filter(example__project_id=project.pk, created_at__gte=window.start)
        .filter(
            Q(kind__in=HUMAN_KINDS, status__in=LIVE_STATUSES)
            | Q(kind=AnnotationKind.LLM, status__in=(AnnotationStatus.ACCEPTED, AnnotationStatus.PENDING))
        )
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values_list("day", "kind", "status", "auto_accepted")
        .annotate(n=Count("id"))
    )
    keys = [key for key, _ in PROVENANCES]
    return _spread(window, ((day, _provenance(kind, status, auto), n) for day, kind, status, auto, n in rows), keys)


def label_total(*, project: Project) -> int:
    """Count the project's standing labels: people's live ones and accepted LLM labels."""
    return Annotation.objects.filter(STANDING, example__project_id=project.pk).count()


def queue_now(*, project: Project) -> dict[str, Any]:
    """Count queue slots by state, and the ready ones by reason, most first."""
    states = dict.fromkeys(QueueState.values, 0)
    ready: dict[str, int] = {}
    rows = (
        QueueItem.objects.filter(project_id=project.pk)
        .order_by()
        .values_list("state", "reason_code")
        .annotate(n=Count("id"))
    )
    for state, reason, n in rows:
        states[state] = states.get(state, 0) + n
        if state == QueueState.READY:
            ready[reason] = ready.get(reason, 0) + n
    by_reason = [
        {"reason": reason, "label": _reason_label(reason), "count": count}
        for reason, count in sorted(ready.items(), key=lambda item: (-item[1], item[0]))
    ]
    return {"by_reason": by_reason, **states}


def _reason_label(reason: str) -> str:
    return QueueReason(reason).label if reason in QueueReason.values else reason


def queue_history(*, project: Project, window: Window) -> dict[str, Any]:
    """Return the ready slots by reason right after each successful queue rebuild in the window, oldest first."""
    builds = list(
        QueueBuild.objects.filter(
            project_id=project.pk,
            state=JobState.SUCCEEDED,
            finished_at__gte=window.start,
            composition__has_key="ready_by_reason",
        )
        .order_by("-id")
        .values_list("pk", "finished_at", "model_number", "composition__ready_by_reason")[:QUEUE_BUILDS_SHOWN]
    )[::-1]
    totals: dict[str, int] = defaultdict(int)
    for *_, ready in builds:
        for reason, count in (ready or {}).items():
            totals[reason] += int(count)
    reasons = sorted(totals, key=lambda reason: (-totals[reason], reason))
    return {
        "builds": [
            {
                "id": pk,
                "at": timezone.localtime(finished).strftime("%Y-%m-%d %H:%M"),
                "model": f"v{model}" if model else "no model",
                "counts": [int((ready or {}).get(reason, 0)) for reason in reasons],
            }
            for pk, finished, model, ready in builds
        ],
        "reasons": [{"reason": reason, "label": _reason_label(reason)} for reason in reasons],
    }


def model_history(*, project: Project) -> list[dict[str, Any]]:
    """Return each model version, oldest first, with its holdout scores and the verdict of its latest gate decision."""
    versions = list(
        ModelVersion.objects.filter(project_id=project.pk)
        .order_by("-number")
        .values_list(
            "pk",
            "number",
            "status",
            "trained_at",
            "created_at",
            "metrics__macro_f1",
            "metrics__accuracy",
            "holdout__size",
        )[:VERSIONS_SHOWN]
    )[::-1]
    gates: dict[int, tuple[bool, str | None, bool]] = {}
    decisions = (
        GateDecision.objects.filter(model_version_id__in=[row[0] for row in versions])
        .order_by("model_version_id", "-id")
        .values_list("model_version_id", "passed", "reasons__0", "overridden_at")
    )
    for version_id, passed, reason, overridden_at in decisions:
        gates.setdefault(version_id, (passed, reason, overridden_at is not None))
    history = []
    for pk, number, status, trained_at, created_at, macro_f1, accuracy, holdout_size in versions:
        passed, reason, overridden = gates.get(pk, (None, None, False))
        when = timezone.localtime(trained_at or created_at)
        history.append(
            {
                "number": number,
                "label": f"v{number}",
                "status": status,
                "status_label": ModelVersionStatus(status).label if status in ModelVersionStatus.values else status,
                "trained": when.strftime("%Y-%m-%d %H:%M"),
                "macro_f1": _number(macro_f1),
                "accuracy": _number(accuracy),
                "holdout_size": int(holdout_size) if isinstance(holdout_size, int | float) else None,
                "gate": "none" if passed is None else ("passed" if passed else "failed"),
                "gate_reason": str(reason or ""),
                "overridden": overridden,
                "published": status == ModelVersionStatus.PUBLISHED,
            }
        )
    return history


def _number(value: Any) -> float | None:
    return round(float(value), 4) if isinstance(value, int | float) and not isinstance(value, bool) else None


def published_get(*, project: Project) -> dict[str, Any] | None:
    """Return the number and holdout macro-F1 of the version that serves now, or None before any publish."""
    row = (
        Deployment.objects.filter(project_id=project.pk)
        .values_list("model_version__number", "model_version__metrics__macro_f1")
        .first()
    )
    return None if row is None else {"number": row[0], "macro_f1": _number(row[1])}


def llm_agreement(*, project: Project, window: Window) -> dict[str, list]:
    """Per day of review: LLM labels accepted as they were, corrected, rejected, and auto-accepted.

    A correction is recorded as a rejected LLM label plus the reviewer's own human label on that example at the
    same instant (`llm_label_correct`); the share accepted counts people's reviews only, not auto-acceptance.
    """
    correction = Annotation.objects.filter(
        example_id=OuterRef("example_id"),
        kind=AnnotationKind.HUMAN,
        author_id=OuterRef("reviewed_by_id"),
        created_at=OuterRef("reviewed_at"),
    )
    rows = (
        Annotation.objects.filter(
            example__project_id=project.pk,
            kind=AnnotationKind.LLM,
            status__in=(AnnotationStatus.ACCEPTED, AnnotationStatus.REJECTED),
            reviewed_at__gte=window.start,
        )
        .annotate(day=TruncDate("reviewed_at"), corrected=Exists(correction))
        .order_by()
        .values_list("day", "status", "auto_accepted", "corrected")
        .annotate(n=Count("id"))
    )

    def outcome(status: str, auto: bool, corrected: bool) -> str:
        if status == AnnotationStatus.ACCEPTED:
            return "auto" if auto else "accepted"
        return "corrected" if corrected else "rejected"

    keys = ("accepted", "corrected", "rejected", "auto")
    series: dict[str, list] = _spread(
        window, ((day, outcome(status, auto, corrected), n) for day, status, auto, corrected, n in rows), keys
    )
    series["share"] = [
        round(100 * accepted / reviewed, 1) if (reviewed := accepted + corrected + rejected) else None
        for accepted, corrected, rejected in zip(
            series["accepted"], series["corrected"], series["rejected"], strict=True
        )
    ]
    return series


def annotator_throughput(*, project: Project, window: Window) -> dict[str, Any]:
    """Human labels per day for the TOP_ANNOTATORS busiest annotators (the rest summed as `others`), and each
    annotator's labels, active hours and labels per active hour over the last THROUGHPUT_DAYS days."""
    people = Q(
        example__project_id=project.pk, kind=AnnotationKind.HUMAN, status__in=LIVE_STATUSES, author__isnull=False
    )
    daily = list(
        Annotation.objects.filter(people, created_at__gte=window.start)
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values_list("day", "author_id")
        .annotate(n=Count("id"))
    )
    recent_start = window.start if len(window.days) <= THROUGHPUT_DAYS else _day_start(window.days[-THROUGHPUT_DAYS])
    pace = list(
        Annotation.objects.filter(people, created_at__gte=recent_start)
        .order_by()
        .values_list("author_id")
        .annotate(
            n=Count("id"),
            hours=Count(TruncHour("created_at"), distinct=True),
            mean_seconds=Avg("seconds_spent"),
        )
        .order_by("-n", "author_id")[:PACE_ROWS_SHOWN]
    )
    totals: dict[int, int] = defaultdict(int)
    for _, author_id, n in daily:
        totals[author_id] += n
    top = sorted(totals, key=lambda author_id: (-totals[author_id], author_id))[:TOP_ANNOTATORS]
    names = _usernames(set(top) | {row[0] for row in pace})
    keys = [str(author_id) for author_id in top] + [OTHERS]
    chosen = set(top)
    series = _spread(
        window, ((day, str(author_id) if author_id in chosen else OTHERS, n) for day, author_id, n in daily), keys
    )
    if not any(series[OTHERS]):
        keys.remove(OTHERS)
    return {
        "annotators": [
            {"key": key, "name": "Others" if key == OTHERS else names.get(int(key), f"user {key}")} for key in keys
        ],
        "series": {key: series[key] for key in keys},
        "pace": [
            {
                "name": names.get(author_id, f"user {author_id}"),
                "labels": n,
                "hours": hours,
                "per_hour": round(n / hours, 1) if hours else None,
                "mean_seconds": round(mean, 1) if mean is not None else None,
            }
            for author_id, n, hours, mean in pace
        ],
        "pace_days": min(len(window.days), THROUGHPUT_DAYS),
    }


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _usernames(user_ids: set[int]) -> dict[int, str]:
    user_model = get_user_model()
    if not user_ids:
        return {}
    return dict(user_model.objects.filter(pk__in=user_ids).values_list("pk", user_model.USERNAME_FIELD))


def prediction_series(*, project: Project, window: Window) -> dict[str, list]:
    """Per day: predictions served, abstained, below the feedback threshold, API calls and mean call time."""
    rows = (
        PredictionLog.objects.filter(project_id=project.pk, created_at__gte=window.start)
        .annotate(day=TruncDate("created_at"))
        .order_by()
        .values_list("day")
        .annotate(
            calls=Count("id"),
            served=Sum("count"),
            abstained=Sum("abstained"),
            low=Sum("low_confidence"),
            ms=Avg("duration_ms"),
        )
    )
    index = window.index()
    size = len(window.days)
    series: dict[str, list] = {
        "served": [0] * size,
        "abstained": [0] * size,
        "low_confidence": [0] * size,
        "calls": [0] * size,
        "mean_ms": [None] * size,
    }
    for day, calls, served, abstained, low, ms in rows:
        if day not in index:
            continue
        position = index[day]
        series["served"][position] = served or 0
        series["abstained"][position] = abstained or 0
        series["low_confidence"][position] = low or 0
        series["calls"][position] = calls
        series["mean_ms"][position] = round(ms, 1) if ms is not None else None
    return series
