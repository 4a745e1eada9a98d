"""Retraining: requesting runs (single-flight per project), running them in a worker, and sweeping dead ones.

A run collects the project's labels with their provenance, splits them in time (the newest human labels are
the holdout), makes sure every example involved has stored vectors, trains, evaluates on the holdout and,
for information, on a random split, writes the artifact and only then records the model version, in one
transaction. A worker killed halfway leaves a running row whose heartbeat stops: the sweeper requeues it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from labeling.models import (
    HUMAN_KINDS,
    LIVE_STATUSES,
    Annotation,
    AnnotationKind,
    AnnotationStatus,
    JobState,
    Label,
    Project,
)
from models_app.ml.timesplit import HUMAN, LLM, LabeledRow, Split, random_split, time_split
from models_app.ml.training import (
    SplitRecord,
    TrainingConfig,
    describe_model,
    evaluate_model,
    save_artifact,
    save_split,
    train_model,
)
from models_app.models import ModelVersion, ModelVersionStatus, TrainingRun, TrainingTrigger
from models_app.project_settings import learning_settings_get

from .features import feature_set_get_or_create, features_compute, features_load, featurizer_build
from .jobs import ACTIVE_STATES, single_flight_request, stale_jobs_sweep

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
HEARTBEAT_SECONDS = 5.0
RANDOM_SPLIT_SEED = 0
# Training is deterministic: the same labels and features give the same model.
TRAINING_SEED = 0
# Final answers settle an example: its other human labels are not used when one of these exists.
_FINAL_KINDS = (AnnotationKind.GOLD, AnnotationKind.ADJUDICATED)

MESSAGE_QUEUED = "Waiting for a worker."
MESSAGE_COLLECTING = "Collecting labels."
MESSAGE_FEATURES = "Computing features for {count:,} examples without stored vectors."
MESSAGE_TRAINING = "Training on {train:,} labels, holding out the newest {holdout:,}."
MESSAGE_RANDOM = "Training the random-split comparison."
MESSAGE_SAVING = "Saving the model."
MESSAGE_DONE = "Model v{number}: macro-F1 {macro_f1:.3f}, accuracy {accuracy:.3f} on the newest {holdout:,} labels."
MESSAGE_GATE = "Comparing v{number} with the published model (the gate)."
MESSAGE_GATE_PASSED = "It passed the gate; publish it from its page."
MESSAGE_GATE_PUBLISHED = "It passed the gate and now serves."
MESSAGE_GATE_FAILED = "The gate rejected it: {reason}"
MESSAGE_FOLLOW_UP = "Labels arrived while this run trained: one more run is queued."
ERROR_WORKER_LOST = "The worker stopped while training (attempt {attempt} of {limit}); the run was queued again."
ERROR_WORKER_LOST_FINAL = "The worker stopped while training {limit} times; the run was given up."
ERROR_UNEXPECTED = "Training failed unexpectedly ({error}); the worker log has the details."

ProgressCallback = Callable[[TrainingRun], None]


def training_run_request(*, project: Project, trigger: str, user: Any = None) -> TrainingRun:
    """Queue a training run, or coalesce into the active one: a run already training gets one follow-up run.

    Single-flight per project is a database constraint (one queued or running run), so concurrent requests
    cannot start two runs.
    """
    return single_flight_request(
        TrainingRun,
        project=project,
        enqueue=lambda run: training_run_enqueue(run=run),
        trigger=trigger,
        requested_by_id=getattr(user, "pk", None),
        message=MESSAGE_QUEUED,
    )


def training_run_enqueue(*, run: TrainingRun) -> None:
    """Send the run to a worker once the row is committed."""
    from models_app.tasks import training_run_execute_task

    training_run_execute_task.delay_on_commit(run.pk)


def training_run_claim(*, run_id: int) -> bool:
    """Move a queued run to running; False when another worker has it or it already ended."""
    now = timezone.now()
    return bool(
        TrainingRun.objects.filter(pk=run_id, state=JobState.QUEUED).update(
            state=JobState.RUNNING,
            started_at=now,
            heartbeat_at=now,
            progress=0.0,
            message=MESSAGE_COLLECTING,
        )
    )


def training_run_execute(*, run_id: int, on_progress: ProgressCallback | None = None) -> TrainingRun | None:
    """Claim and carry out one queued run; the row always says how it ended."""
    if not training_run_claim(run_id=run_id):
        return TrainingRun.objects.filter(pk=run_id).first()
    run = TrainingRun.objects.select_related("project").get(pk=run_id)
    TrainingRun.objects.filter(pk=run.pk).update(attempts=run.attempts + 1)
    run.attempts += 1
    try:
        with _heartbeat(run.pk):
            version = _train(run, on_progress)
    except Exception as exc:  # noqa: BLE001 - the run row must always say how it ended
        logger.exception("training run %s failed", run.pk)
        _finish(run, state=JobState.FAILED, message=ERROR_UNEXPECTED.format(error=type(exc).__name__))
        return run
    _finish(run, state=JobState.SUCCEEDED, message=run.message, version=version)
    return run


def _train(run: TrainingRun, on_progress: ProgressCallback | None) -> ModelVersion | None:
    project = run.project
    learning = learning_settings_get(project)
    step = _stepper(run, on_progress)

    step(0.02, MESSAGE_COLLECTING)
    rows, labels_now = training_rows(project=project, llm_weight=learning.llm_label_weight)
    TrainingRun.objects.filter(pk=run.pk).update(labels_at_start=labels_now)
    split = time_split(rows, holdout_share=learning.holdout_share)
    if not split.enough:
        run.message = split.reason
        return None

    featurizer = featurizer_build(name=learning.featurizer)
    feature_set = feature_set_get_or_create(project=project, featurizer=featurizer)
    # Every labeled example: the time split's rows and the random split's (which may include the future).
    needed = sorted({row.example_id for row in rows})
    step(0.05, MESSAGE_FEATURES.format(count=len(needed)))

    def features_progress(done: int, total: int) -> None:
        step(0.05 + 0.45 * done / max(total, 1), MESSAGE_FEATURES.format(count=total))

    features_compute(feature_set=feature_set, on_progress=features_progress)
    matrix = features_load(feature_set=feature_set, example_ids=needed)

    step(0.5, MESSAGE_TRAINING.format(train=len(split.train), holdout=len(split.holdout)))
    config = TrainingConfig(seed=TRAINING_SEED)
    label_names = list(Label.objects.filter(project=project).order_by("order", "name").values_list("name", flat=True))
    model, report, majority = _fit_and_evaluate(rows, split, matrix, featurizer.sparse, config, label_names)
    step(0.75, MESSAGE_RANDOM)
    random_report: dict[str, Any] = {}
    comparison = random_split(rows, holdout_share=learning.holdout_share, seed=RANDOM_SPLIT_SEED)
    if comparison.enough:
        _, random_result, _ = _fit_and_evaluate(rows, comparison, matrix, featurizer.sparse, config, label_names)
        random_report = {**random_result.to_dict(), "split": comparison.summary()}

    step(0.9, MESSAGE_SAVING)
    relative = Path(str(project.pk)) / f"run-{run.pk}-attempt-{run.attempts}.skops"
    sha256 = save_artifact(model, Path(settings.ARTIFACT_DIR) / relative)
    split_relative = relative.with_suffix(".split.npz")
    split_sha256 = save_split(
        SplitRecord(
            train_ids=np.array([rows[index].example_id for index in split.train], dtype=np.int64),
            holdout_ids=np.array([rows[index].example_id for index in split.holdout], dtype=np.int64),
            holdout_labels=np.array([rows[index].label for index in split.holdout], dtype=np.str_),
        ),
        Path(settings.ARTIFACT_DIR) / split_relative,
    )
    counts = Counter(rows[index].provenance for index in split.train)
    with transaction.atomic():
        number = (ModelVersion.objects.filter(project=project).aggregate(top=Max("number"))["top"] or 0) + 1
        version = ModelVersion.objects.create(
            project=project,
            number=number,
            featurizer=featurizer.name,
            feature_version=featurizer.version,
            algorithm=config.algorithm,
            params={**config.to_dict(), "featurizer_params": featurizer.params(), "fit": describe_model(model)},
            seed=config.seed,
            training_counts={
                "human": counts.get(HUMAN, 0),
                "llm": counts.get(LLM, 0),
                "synthetic": counts.get("synthetic", 0),
                "total": len(split.train),
                "dropped_duplicates": split.dropped_duplicates,
                "dropped_future": split.dropped_future,
                "undated": split.undated_in_train,
                "merged_holdout_labels": split.merged_holdout_labels,
                "majority_label": majority,
            },
            cutoff=split.cutoff,
            holdout={
                "size": len(split.holdout),
                "cutoff": split.cutoff.isoformat() if split.cutoff else None,
                "share": learning.holdout_share,
                "support": {name: values["support"] for name, values in report.per_class.items()},
            },
            metrics=report.to_dict(),
            random_split_metrics=random_report,
            artifact_path=str(relative),
            artifact_sha256=sha256,
            split_path=str(split_relative),
            split_sha256=split_sha256,
            status=ModelVersionStatus.EVALUATED,
            training_run=run,
            trained_at=timezone.now(),
        )
    step(0.95, MESSAGE_GATE.format(number=number))
    from flywheel.loop import model_version_evaluated

    decision = model_version_evaluated(version=version)
    version.refresh_from_db()
    verdict = (
        MESSAGE_GATE_PASSED if decision.passed else MESSAGE_GATE_FAILED.format(reason=(decision.reasons or [""])[0])
    )
    if version.status == ModelVersionStatus.PUBLISHED:
        verdict = MESSAGE_GATE_PUBLISHED
    run.message = (
        MESSAGE_DONE.format(
            number=number, macro_f1=report.macro_f1, accuracy=report.accuracy, holdout=len(split.holdout)
        )
        + " "
        + verdict
    )
    return version


def _fit_and_evaluate(
    rows: list[LabeledRow], split: Split, matrix: Any, sparse: bool, config: TrainingConfig, labels: list[str]
) -> tuple[Any, Any, str]:
    """Fit on the split's training rows and score on its holdout; return the model, report and majority label."""
    train_rows = [rows[index] for index in split.train]
    holdout_rows = [rows[index] for index in split.holdout]
    X_train = matrix.rows_for([row.example_id for row in train_rows])
    X_holdout = matrix.rows_for([row.example_id for row in holdout_rows])
    y_train = [row.label for row in train_rows]
    majority = Counter(y_train).most_common(1)[0][0]
    model = train_model(
        X_train, y_train, sparse=sparse, config=config, sample_weight=np.array([row.weight for row in train_rows])
    )
    known = labels + sorted({row.label for row in (*train_rows, *holdout_rows)} - set(labels))
    report = evaluate_model(model, X_holdout, [row.label for row in holdout_rows], known, majority)
    return model, report, majority


def training_rows(*, project: Project, llm_weight: float) -> tuple[list[LabeledRow], int]:
    """Return one row per standing label the model may learn from, and the number of human labels counted.

    People's labels (imported ones included) are "human"; a gold or adjudicated answer replaces the other
    human labels of its example. Accepted LLM labels count only for examples no person labeled, weighted
    by the project's setting.
    """
    annotations = (
        Annotation.objects.filter(example__project=project, status__in=LIVE_STATUSES)
        .filter(Q(kind__in=HUMAN_KINDS) | Q(kind=AnnotationKind.LLM, status=AnnotationStatus.ACCEPTED))
        .values_list("example_id", "example__text", "example__observed_at", "label__name", "kind", "id")
        .order_by("example_id", "id")
    )
    by_example: dict[int, list[tuple[Any, ...]]] = {}
    for row in annotations.iterator(chunk_size=5000):
        by_example.setdefault(row[0], []).append(row)
    rows: list[LabeledRow] = []
    human_count = 0
    for example_id, labels in by_example.items():
        final = [row for row in labels if row[4] in _FINAL_KINDS]
        human = final[-1:] or [row for row in labels if row[4] in HUMAN_KINDS]
        human_count += len([row for row in labels if row[4] in HUMAN_KINDS])
        chosen = human or [row for row in labels if row[4] == AnnotationKind.LLM][-1:]
        provenance, weight = (HUMAN, 1.0) if human else (LLM, llm_weight)
        if weight <= 0:
            continue
        for _, text, observed_at, label, _, _ in chosen:
            rows.append(LabeledRow(example_id, text, observed_at, label, provenance, weight))
    return rows, human_count


def human_label_count(*, project: Project) -> int:
    """Count the project's standing human labels (what retraining thresholds compare against)."""
    return Annotation.objects.filter(example__project=project, kind__in=HUMAN_KINDS, status__in=LIVE_STATUSES).count()


def training_triggers_check(*, now: datetime | None = None) -> list[TrainingRun]:
    """Request runs where enough new human labels arrived, or where the schedule is due; return them.

    Runs from beat rather than on each label, so the annotate request stays a few statements long.
    """
    now = now or timezone.now()
    requested = []
    for project in Project.objects.all():
        learning = learning_settings_get(project)
        last = TrainingRun.objects.filter(project=project).order_by("-id").first()
        if last is not None and last.state in ACTIVE_STATES:
            continue
        labels = human_label_count(project=project)
        since = labels - (last.labels_at_start if last is not None else 0)
        if since >= learning.retrain_every_labels:
            requested.append(training_run_request(project=project, trigger=TrainingTrigger.LABELS))
            continue
        due = learning.schedule_hours and last is not None and last.finished_at is not None
        if due and since > 0 and now - last.finished_at >= timedelta(hours=learning.schedule_hours):
            requested.append(training_run_request(project=project, trigger=TrainingTrigger.SCHEDULE))
    return requested


def training_runs_sweep(*, now: datetime | None = None) -> int:
    """Requeue running runs whose heartbeat stopped (their worker died); give up after MAX_ATTEMPTS."""
    return stale_jobs_sweep(
        TrainingRun,
        enqueue=lambda run: training_run_enqueue(run=run),
        lost=ERROR_WORKER_LOST,
        lost_final=ERROR_WORKER_LOST_FINAL,
        now=now,
        reset={"progress": 0.0},
        max_attempts=MAX_ATTEMPTS,
    )


def _finish(run: TrainingRun, *, state: str, message: str, version: ModelVersion | None = None) -> None:
    """Record how the run ended; queue its follow-up when labels arrived meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        follow_up = TrainingRun.objects.filter(pk=run.pk).values_list("follow_up", flat=True).first()
        text = f"{message} {MESSAGE_FOLLOW_UP}" if follow_up else message
        TrainingRun.objects.filter(pk=run.pk).update(
            state=state,
            message=text,
            progress=1.0 if state == JobState.SUCCEEDED else run.progress,
            model_version=version,
            finished_at=now,
            heartbeat_at=now,
        )
        if follow_up:
            # This run no longer counts as active, so the request below makes a new queued run.
            training_run_request(project=run.project, trigger=run.trigger, user=run.requested_by)
        if version is not None:
            from flywheel.loop import model_version_trained

            model_version_trained(version=version)
    run.refresh_from_db()


def _stepper(run: TrainingRun, on_progress: ProgressCallback | None) -> Callable[[float, str], None]:
    """Return a function that records progress and a message on the run (at most every half second)."""
    last = [0.0]

    def step(progress: float, message: str) -> None:
        now = timezone.now().timestamp()
        if now - last[0] < 0.5 and progress < 1.0:
            return
        last[0] = now
        run.progress = round(min(max(progress, 0.0), 1.0), 4)
        run.message = message
        TrainingRun.objects.filter(pk=run.pk).update(
            progress=run.progress, message=message, heartbeat_at=timezone.now()
        )
        if on_progress is not None:
            on_progress(run)

    return step


@contextmanager
def _heartbeat(run_id: int, every: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Beat the run's heartbeat from a thread while the block runs (fitting a model blocks for a while).

    On SQLite, which has one writer at a time, the progress steps beat it instead: a second writing thread would
    only wait for the first.
    """
    if connection.vendor == "sqlite":
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(every):
                TrainingRun.objects.filter(pk=run_id, state=JobState.RUNNING).update(heartbeat_at=timezone.now())
        finally:
            connection.close()

    thread = threading.Thread(target=beat, name=f"training-run-{run_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 5)
