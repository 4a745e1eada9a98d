"""Serve predictions from the published (model version, rule set), log them, and feed the uncertain ones back.

Each call reads the project's deployment row, so a switch is seen by the next request of every serving process
without a restart; loaded models and compiled rule sets are cached per process by their (immutable) versions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from labeling.importing.rows import content_hash
from labeling.models import Example, ExampleOrigin, Project
from models_app.ml.rules import CompiledRules, apply_rules, compile_rules
from models_app.models import Deployment, ModelVersion, PredictionLog, QueueBuildTrigger, RuleSet
from models_app.project_settings import serving_settings_get

from .gate import rule_specs
from .scoring import LoadedModel, model_cached, model_load

logger = logging.getLogger(__name__)

MAX_TEXTS = 1000
MAX_TEXT_CHARS = 20_000
FEEDBACK_SWEEP_AFTER = timedelta(minutes=2)
ERROR_NO_MODEL = (
    "No model is published in {slug} yet: label more examples until a model passes the gate, or publish one."
)
# How long a serving process trusts its last read of the deployment row.
LIVE_REFRESH_SECONDS = 1.0
_live_cache: dict[int, tuple[float, Any]] = {}
_live_lock = threading.Lock()
_rules_cache: OrderedDict[int, CompiledRules] = OrderedDict()
_rules_lock = threading.Lock()


class PredictError(Exception):
    """Nothing can answer (no published model); the message says what to do."""


@dataclass(frozen=True)
class PredictResult:
    model_version: int
    rules_version: int | None
    predictions: list[dict[str, Any]]
    log_id: int


def _live(project_id: int) -> tuple[int, int, str, int | None, int | None] | None:
    """Return what serves now: the version's id, number and checksum, the rule set's id and number.

    Read from the deployment row at most every LIVE_REFRESH_SECONDS per process, so a switch reaches every serving
    process within that time, without a restart; a switch made by this process is seen at once.
    """
    now = time.monotonic()
    with _live_lock:
        cached = _live_cache.get(project_id)
    if cached is not None and now - cached[0] < LIVE_REFRESH_SECONDS:
        return cached[1]
    live = (
        Deployment.objects.filter(project_id=project_id)
        .values_list(
            "model_version_id",
            "model_version__number",
            "model_version__artifact_sha256",
            "rule_set_id",
            "rule_set__number",
        )
        .first()
    )
    with _live_lock:
        _live_cache[project_id] = (now, live)
    return live


def serving_refresh(*, project_id: int | None = None) -> None:
    """Forget what this process remembers about what serves (after a switch, so its next call reads the new pair).

    Without a project, forget the compiled rule sets too (tests, whose rolled-back ids come back).
    """
    with _live_lock:
        if project_id is None:
            _live_cache.clear()
        else:
            _live_cache.pop(project_id, None)
    if project_id is None:
        with _rules_lock:
            _rules_cache.clear()


def _model(version_id: int, sha256: str) -> LoadedModel:
    """Return the loaded model from the process cache; read the version's row only the first time."""
    cached = model_cached(version_id, sha256)
    return cached if cached is not None else model_load(ModelVersion.objects.get(pk=version_id))


def _rules(rule_set_id: int | None, labels: Sequence[str]) -> CompiledRules:
    """Return the compiled rules of a rule set, compiled once per process (rule sets never change)."""
    key = rule_set_id or 0
    with _rules_lock:
        compiled = _rules_cache.get(key)
    if compiled is not None and tuple(compiled.labels) == tuple(labels):
        return compiled
    rule_set = RuleSet.objects.filter(pk=rule_set_id).first() if rule_set_id else None
    compiled = compile_rules(rule_specs(rule_set), labels)
    with _rules_lock:
        _rules_cache[key] = compiled
        while len(_rules_cache) > 32:
            _rules_cache.popitem(last=False)
    return compiled


def predict(
    *, project: Project, texts: Sequence[str], metas: Sequence[Mapping[str, Any]] | None, user: Any = None
) -> PredictResult:
    """Answer with the published model and rules; log the call and queue the uncertain inputs as feedback."""
    started = time.perf_counter()
    live = _live(project.pk)
    if live is None:
        raise PredictError(ERROR_NO_MODEL.format(slug=project.slug))
    version_id, model_number, sha256, rule_set_id, rules_number = live
    loaded = _model(version_id, sha256)
    compiled = _rules(rule_set_id, loaded.labels)
    proba = loaded.proba(texts)
    ruled = apply_rules(compiled, texts, metas, proba, loaded.labels)
    serving = serving_settings_get(project)
    predictions = []
    feedback = []
    low = 0
    for index, item in enumerate(ruled):
        predictions.append(
            {
                "label": item.label,
                "probabilities": {name: round(float(value), 6) for name, value in item.probabilities.items()},
                "abstained": item.abstained,
                "rules_fired": list(item.rules_fired),
                "confidence": round(float(item.confidence), 6),
                "tags": list(item.tags),
            }
        )
        uncertain = item.confidence < serving.feedback_threshold
        low += uncertain
        if serving.feedback and (uncertain or item.abstained):
            meta = dict(metas[index]) if metas else {}
            feedback.append({"text": texts[index], "meta": meta, "label": item.label, "confidence": item.confidence})
    if connection.vendor == "postgresql" and connection.in_atomic_block:
        # A crash may lose the last fraction of a second of logs; the call does not wait for the WAL flush.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
    log = PredictionLog.objects.create(
        project_id=project.pk,
        model_version_id=version_id,
        model_number=model_number,
        rules_number=rules_number,
        requested_by_id=getattr(user, "pk", None),
        count=len(texts),
        abstained=sum(item.abstained for item in ruled),
        low_confidence=low,
        predictions=[[p["label"], p["confidence"], p["abstained"], p["rules_fired"]] for p in predictions],
        feedback=feedback,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    if feedback:
        from models_app.tasks import feedback_ingest_task

        transaction.on_commit(lambda: feedback_ingest_task.delay(log.pk))
    return PredictResult(model_number, rules_number, predictions, log.pk)


def feedback_ingest(*, log_id: int) -> dict[str, int]:
    """Turn a logged call's uncertain inputs into feedback examples (deduplicated) and queue them.

    Claimed with a conditional update, so a repeated task does nothing. New examples are queued at once and a
    queue rebuild is requested, whose feedback source ranks them.
    """
    claimed = PredictionLog.objects.filter(pk=log_id, feedback_done_at__isnull=True).update(
        feedback_done_at=timezone.now()
    )
    if not claimed:
        return {}
    log = PredictionLog.objects.select_related("project").get(pk=log_id)
    project = log.project
    seen: dict[str, dict[str, Any]] = {}
    for entry in log.feedback:
        text = str(entry.get("text", "")).strip()
        if text:
            seen.setdefault(content_hash(text), {**entry, "text": text})
    existing = set(
        Example.objects.filter(project=project, content_hash__in=list(seen)).values_list("content_hash", flat=True)
    )
    fresh_entries = [(key, entry) for key, entry in seen.items() if key not in existing]
    room = _feedback_room(project)
    over_cap = max(len(fresh_entries) - room, 0)
    fresh = [
        Example(
            project=project,
            text=entry["text"],
            meta={
                **(entry.get("meta") or {}),
                "feedback": {
                    "prediction_log": log.pk,
                    "model_version": log.model_number,
                    "predicted": entry.get("label"),
                    "confidence": round(float(entry.get("confidence") or 0.0), 4),
                },
            },
            observed_at=log.created_at,
            content_hash=key,
            origin=ExampleOrigin.FEEDBACK,
        )
        for key, entry in fresh_entries[:room]
    ]
    from labeling.services.queue import queue_fill

    with transaction.atomic():
        created = Example.objects.bulk_create(fresh, ignore_conflicts=True)
        queued = queue_fill(project=project) if fresh else 0
    duplicates = len(log.feedback) - len(fresh_entries)
    result = {"created": len(created), "duplicates": duplicates, "over_daily_cap": over_cap, "queued": queued}
    PredictionLog.objects.filter(pk=log.pk).update(feedback_result=result)
    if fresh:
        from .queue_builds import queue_build_request

        queue_build_request(project=project, trigger=QueueBuildTrigger.FEEDBACK)
    return result


def _feedback_room(project: Project) -> int:
    """Return how many more feedback examples the project takes today (UTC) under its daily cap."""
    cap = serving_settings_get(project).feedback_per_day
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    # Feedback examples are observed when their prediction was made: the (project, observed_at) index finds today's.
    today = Example.objects.filter(project=project, observed_at__gte=start, origin=ExampleOrigin.FEEDBACK).count()
    return max(cap - today, 0)


def feedback_sweep(*, now: Any = None) -> int:
    """Ingest feedback whose task never ran (a lost message, a broker restart); return the calls handled."""
    cutoff = (now or timezone.now()) - FEEDBACK_SWEEP_AFTER
    pending = list(
        PredictionLog.objects.filter(feedback_done_at__isnull=True, created_at__lt=cutoff)
        .exclude(feedback=[])
        .values_list("pk", flat=True)[:200]
    )
    for log_id in pending:
        feedback_ingest(log_id=log_id)
    return len(pending)


def prediction_logs_prune(*, now: Any = None, batch: int = 5000) -> int:
    """Delete logs older than FLYWHEEL_PREDICTION_LOG_DAYS whose feedback is queued; return how many went."""
    days = django_settings.FLYWHEEL_PREDICTION_LOG_DAYS
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    old = PredictionLog.objects.filter(created_at__lt=cutoff).filter(Q(feedback_done_at__isnull=False) | Q(feedback=[]))
    deleted = 0
    while True:
        ids = list(old.values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += PredictionLog.objects.filter(pk__in=ids).delete()[0]
