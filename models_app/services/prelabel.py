"""Pre-labeling: an LLM labeler suggests labels for a selection of examples, in chunks, in a worker, cancellable.

Each text is shown with its nearest human-labeled examples (from the feature store) as few-shot examples. Every
suggestion is stored as a pending LLM label with the labeler, model, prompt version, confidence and the project's
model's prediction at the time, for the review desk. With auto-accept on, suggestions at or above the calibrated
trust threshold are accepted at once. After the job, the queue is re-ranked so that what the LLM doubts, or
disagrees with the model about, reaches people first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from labeling.models import (
    HUMAN_KINDS,
    LIVE_STATUSES,
    Annotation,
    AnnotationKind,
    Example,
    Label,
    Project,
    QueueItem,
    QueueReason,
    QueueState,
)
from labeling.services import LLMLabel, llm_labels_store
from models_app.ml.neighbours import top_k
from models_app.ml.training import load_artifact, predict_proba
from models_app.models import PrelabelJob, PrelabelSelection, PrelabelState
from models_app.project_settings import learning_settings_get, llm_settings_get

from .features import feature_set_get_or_create, features_compute, features_load, featurizer_build
from .jobs import stale_jobs_sweep
from .queue_plan import ranking_model_get

logger = logging.getLogger(__name__)

ACTIVE_STATES = (PrelabelState.QUEUED, PrelabelState.RUNNING)
MAX_ATTEMPTS = 3
CHUNK = 16
MAX_LIMIT = 100_000
# Few-shot examples come from the newest this-many human labels.
SHOT_POOL_MAX = 20_000

MESSAGE_QUEUED = "Waiting for a worker."
MESSAGE_SELECTING = "Choosing the examples to pre-label."
MESSAGE_LOADING = "Loading the {labeler} labeler."
MESSAGE_LABELING = "Pre-labeled {done:,} of {total:,} examples with {labeler}."
MESSAGE_DONE = "Pre-labeled {done:,} examples with {labeler}: {created:,} new LLM labels to review{auto}."
MESSAGE_AUTO = ", {count:,} accepted automatically above confidence {threshold:.2f}"
MESSAGE_NOTHING = "Nothing to pre-label: every selected example already has a label or a suggestion from {labeler}."
MESSAGE_CANCELLED = "Cancelled after {done:,} of {total:,} examples; the labels made so far are kept."
ERROR_LIMIT = "limit must be between 1 and {limit:,}."
ERROR_SELECTION = "selection must be one of: " + ", ".join(PrelabelSelection.values) + "."
ERROR_FILTER = "A filter selection needs some text to look for."
ERROR_LABELER = "labeler must be one of: causal_lm, embedding, openai."
ERROR_WORKER_LOST = "The worker stopped while pre-labeling (attempt {attempt} of {limit}); the job was queued again."
ERROR_WORKER_LOST_FINAL = "The worker stopped while pre-labeling {limit} times; the job was given up."
ERROR_UNEXPECTED = "Pre-labeling failed ({error}: {detail}); the worker log has the details."

ProgressCallback = Callable[[PrelabelJob], None]


class PrelabelError(Exception):
    """The pre-labeling request is not valid; the message says why."""


def prelabel_job_request(
    *,
    project: Project,
    labeler: str | None = None,
    limit: int = 200,
    selection: str = PrelabelSelection.QUEUE,
    filter_text: str = "",
    user: Any = None,
) -> tuple[PrelabelJob, bool]:
    """Queue a pre-labeling job; return (job, joined): a job already queued or running is returned instead."""
    llm = llm_settings_get(project)
    labeler = labeler or llm.labeler
    if labeler not in ("causal_lm", "embedding", "openai"):
        raise PrelabelError(ERROR_LABELER)
    if not 1 <= int(limit) <= MAX_LIMIT:
        raise PrelabelError(ERROR_LIMIT.format(limit=MAX_LIMIT))
    if selection not in PrelabelSelection.values:
        raise PrelabelError(ERROR_SELECTION)
    if selection == PrelabelSelection.FILTER and not filter_text.strip():
        raise PrelabelError(ERROR_FILTER)
    params = (
        {**llm.labeler_params(), "few_shot": llm.few_shot} if labeler == llm.labeler else {"few_shot": llm.few_shot}
    )
    try:
        with transaction.atomic():
            job = PrelabelJob.objects.create(
                project=project,
                requested_by_id=getattr(user, "pk", None),
                labeler=labeler,
                params=params,
                selection=selection,
                filter_text=filter_text.strip()[:200],
                limit=int(limit),
                message=MESSAGE_QUEUED,
            )
            prelabel_job_enqueue(job=job)
            return job, False
    except IntegrityError:
        active = PrelabelJob.objects.filter(project=project, state__in=ACTIVE_STATES).order_by("-id").first()
        if active is None:
            return prelabel_job_request(
                project=project, labeler=labeler, limit=limit, selection=selection, filter_text=filter_text, user=user
            )
        return active, True


def prelabel_job_enqueue(*, job: PrelabelJob) -> None:
    from models_app.tasks import prelabel_job_execute_task

    prelabel_job_execute_task.delay_on_commit(job.pk)


def prelabel_job_cancel(*, job: PrelabelJob) -> PrelabelJob:
    """Stop a job: a queued one at once, a running one after its current chunk (what it labeled is kept)."""
    now = timezone.now()
    PrelabelJob.objects.filter(pk=job.pk, state=PrelabelState.QUEUED).update(
        state=PrelabelState.CANCELLED,
        cancel_requested=True,
        finished_at=now,
        message=MESSAGE_CANCELLED.format(done=0, total=job.total),
    )
    PrelabelJob.objects.filter(pk=job.pk, state=PrelabelState.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    return job


def prelabel_jobs_sweep(*, now: datetime | None = None) -> int:
    """Requeue running jobs whose heartbeat stopped (their worker died); give up after MAX_ATTEMPTS."""
    return stale_jobs_sweep(
        PrelabelJob,
        enqueue=lambda job: prelabel_job_enqueue(job=job),
        lost=ERROR_WORKER_LOST,
        lost_final=ERROR_WORKER_LOST_FINAL,
        now=now,
        max_attempts=MAX_ATTEMPTS,
    )


def prelabel_job_execute(*, job_id: int, on_progress: ProgressCallback | None = None) -> PrelabelJob | None:
    """Claim and run one queued job; the row always says how it ended."""
    now = timezone.now()
    claimed = PrelabelJob.objects.filter(pk=job_id, state=PrelabelState.QUEUED).update(
        state=PrelabelState.RUNNING, started_at=now, heartbeat_at=now, message=MESSAGE_SELECTING
    )
    job = PrelabelJob.objects.select_related("project").filter(pk=job_id).first()
    if not claimed or job is None:
        return job
    job.attempts += 1
    PrelabelJob.objects.filter(pk=job.pk).update(attempts=job.attempts)
    try:
        state, message = _run(job, on_progress)
    except Exception as exc:  # noqa: BLE001 - the job row must always say how it ended
        logger.exception("prelabel job %s failed", job.pk)
        state, message = PrelabelState.FAILED, ERROR_UNEXPECTED.format(error=type(exc).__name__, detail=str(exc)[:300])
    PrelabelJob.objects.filter(pk=job.pk).update(
        state=state,
        message=message,
        progress=1.0 if state == PrelabelState.SUCCEEDED else job.progress,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    job.refresh_from_db()
    if job.created:
        from flywheel.loop import prelabel_finished

        prelabel_finished(job=job)
    return job


def prelabel_selection_ids(*, job: PrelabelJob) -> list[int]:
    """Return the examples the job labels, in order: none a person labeled, none this labeler already labeled."""
    project = job.project
    labeled = Annotation.objects.filter(example=OuterRef("pk"), kind__in=HUMAN_KINDS, status__in=LIVE_STATUSES)
    suggested = Annotation.objects.filter(
        example=OuterRef("pk"), kind=AnnotationKind.LLM, labeler_name=job.labeler, status__in=LIVE_STATUSES
    )
    candidates = Example.objects.filter(project=project).exclude(Exists(labeled)).exclude(Exists(suggested))
    if job.selection == PrelabelSelection.QUEUE:
        ordered = (
            QueueItem.objects.filter(project=project, state=QueueState.READY)
            .exclude(reason_code__in=(QueueReason.GOLD, QueueReason.LABEL_ERROR))
            .filter(example__in=candidates)
            .order_by("-priority", "id")
            .values_list("example_id", flat=True)
        )
        chosen: dict[int, None] = {}
        for example_id in ordered.iterator(chunk_size=2000):
            chosen[example_id] = None  # an example's overlap slots count once
            if len(chosen) >= job.limit:
                break
        return list(chosen)
    if job.selection == PrelabelSelection.FILTER:
        candidates = candidates.filter(text__icontains=job.filter_text)
    return list(candidates.order_by("id").values_list("pk", flat=True)[: job.limit])


def _run(job: PrelabelJob, on_progress: ProgressCallback | None) -> tuple[str, str]:
    # Imported here: the labelers bring transformers, which web processes never need.
    from models_app.ml.llm import LabelSpec, labeler_from_spec

    project = job.project
    ids = prelabel_selection_ids(job=job)
    PrelabelJob.objects.filter(pk=job.pk).update(total=len(ids))
    job.total = len(ids)
    if not ids:
        return PrelabelState.SUCCEEDED, MESSAGE_NOTHING.format(labeler=job.labeler)
    _step(job, 0.02, MESSAGE_LOADING.format(labeler=job.labeler), on_progress)
    labels = list(Label.objects.filter(project=project).order_by("order", "name"))
    specs = [LabelSpec(name=label.name, description=label.description) for label in labels]
    names = [label.name for label in labels]
    params = {key: value for key, value in job.params.items() if key != "few_shot"}
    labeler = labeler_from_spec(job.labeler, params, threads=settings.FLYWHEEL_LLM_THREADS)
    texts = dict(Example.objects.filter(pk__in=ids).values_list("pk", "text"))
    context = _Context.build(project, ids, names, shots=int(job.params.get("few_shot", 3)))
    threshold = _auto_accept_threshold(project, job.labeler)
    started = time.perf_counter()
    done = created = auto = 0
    details: dict[str, Any] = {}
    for start in range(0, len(ids), CHUNK):
        if PrelabelJob.objects.filter(pk=job.pk, cancel_requested=True).exists():
            _save_counts(job, done, created, auto, details, started)
            return PrelabelState.CANCELLED, MESSAGE_CANCELLED.format(done=done, total=len(ids))
        chunk = ids[start : start + CHUNK]
        result = labeler.predict_proba(
            [texts[i] for i in chunk], specs, few_shot=[context.shots_for(i) for i in chunk] or None
        )
        model_label, model_confidence = context.model_predictions(chunk)
        rows = []
        for row, example_id in enumerate(chunk):
            proba = np.asarray(result.proba[row], dtype=np.float64)
            best = int(proba.argmax())
            rows.append(
                LLMLabel(
                    example_id=example_id,
                    label=names[best],
                    confidence=float(proba[best]),
                    probabilities=dict(zip(names, proba.tolist(), strict=True)),
                    model_label=model_label[row],
                    model_confidence=model_confidence[row],
                )
            )
        stored = llm_labels_store(
            project=project,
            labeler=job.labeler,
            model=result.model,
            prompt_version=result.prompt_version,
            rows=rows,
            auto_accept_at=threshold,
        )
        done += len(chunk)
        created += stored.created
        auto += stored.auto_accepted
        details = {
            "model": result.model,
            "prompt_version": result.prompt_version,
            **{k: v for k, v in (result.details or {}).items() if k in ("content_free_prior", "calibrated", "retries")},
            "auto_accept_threshold": threshold,
        }
        _save_counts(job, done, created, auto, details, started)
        _step(
            job,
            0.05 + 0.95 * done / len(ids),
            MESSAGE_LABELING.format(done=done, total=len(ids), labeler=job.labeler),
            on_progress,
        )
    auto_text = MESSAGE_AUTO.format(count=auto, threshold=threshold) if threshold is not None else ""
    return PrelabelState.SUCCEEDED, MESSAGE_DONE.format(done=done, labeler=job.labeler, created=created, auto=auto_text)


def _save_counts(job: PrelabelJob, done: int, created: int, auto: int, details: dict[str, Any], started: float) -> None:
    seconds = time.perf_counter() - started
    details = {
        **details,
        "seconds": round(seconds, 2),
        "examples_per_second": round(done / seconds, 2) if seconds else None,
    }
    PrelabelJob.objects.filter(pk=job.pk).update(done=done, created=created, auto_accepted=auto, details=details)
    job.done, job.created, job.auto_accepted, job.details = done, created, auto, details


def _step(job: PrelabelJob, progress: float, message: str, on_progress: ProgressCallback | None) -> None:
    job.progress = round(min(max(progress, 0.0), 1.0), 4)
    job.message = message
    PrelabelJob.objects.filter(pk=job.pk).update(progress=job.progress, message=message, heartbeat_at=timezone.now())
    if on_progress is not None:
        on_progress(job)


def _auto_accept_threshold(project: Project, labeler: str) -> float | None:
    """The confidence above which this labeler's labels are accepted without review, when auto-accept is on."""
    llm = llm_settings_get(project)
    if not llm.auto_accept:
        return None
    from .trust import trust_get

    report = trust_get(project=project, labeler=labeler)
    return report.overall.threshold if report is not None else None


class _Context:
    """Few-shot neighbours and the model's predictions for the selected examples, from the feature store."""

    def __init__(self) -> None:
        self.shots: dict[int, list[Any]] = {}
        self.predicted: dict[int, tuple[str, float]] = {}

    @classmethod
    def build(cls, project: Project, ids: list[int], names: list[str], *, shots: int) -> _Context:
        context = cls()
        learning = learning_settings_get(project)
        model_version = ranking_model_get(project=project)
        labeled = list(
            Annotation.objects.filter(
                example__project=project, kind__in=HUMAN_KINDS, status__in=LIVE_STATUSES, label__name__in=names
            )
            .order_by("-id")
            .values_list("example_id", "label__name", "example__text")[:SHOT_POOL_MAX]
        )
        labeled_by_example = {example_id: (label, text) for example_id, label, text in reversed(labeled)}
        if not shots and model_version is None:
            return context
        featurizer = featurizer_build(name=model_version.featurizer if model_version else learning.featurizer)
        feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)
        features_compute(feature_set=feature_set)
        wanted = np.array(sorted(set(ids) | set(labeled_by_example)), dtype=np.int64)
        matrix = features_load(feature_set=feature_set, example_ids=wanted)
        present = set(matrix.ids.tolist())
        query_ids = [i for i in ids if i in present]
        if shots and labeled_by_example and query_ids:
            from models_app.ml.llm import Shot

            base_ids = [i for i in labeled_by_example if i in present]
            positions, _ = top_k(matrix.rows_for(query_ids), matrix.rows_for(base_ids), shots)
            for row, example_id in enumerate(query_ids):
                context.shots[example_id] = [
                    Shot(text=labeled_by_example[base_ids[p]][1], label=labeled_by_example[base_ids[p]][0])
                    for p in positions[row]
                    if base_ids[p] != example_id
                ]
        if model_version is not None and query_ids:
            model = load_artifact(
                Path(settings.ARTIFACT_DIR) / model_version.artifact_path, model_version.artifact_sha256
            )
            proba = predict_proba(model, matrix.rows_for(query_ids), names)
            for row, example_id in enumerate(query_ids):
                best = int(proba[row].argmax())
                context.predicted[example_id] = (names[best], float(proba[row, best]))
        return context

    def shots_for(self, example_id: int) -> list[Any]:
        return self.shots.get(example_id, [])

    def model_predictions(self, ids: list[int]) -> tuple[list[str | None], list[float | None]]:
        found = [self.predicted.get(i) for i in ids]
        return [f[0] if f else None for f in found], [f[1] if f else None for f in found]
