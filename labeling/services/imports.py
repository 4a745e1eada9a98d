"""Import jobs: store the upload, run it in a worker with progress, report every rejected row."""

from __future__ import annotations

import csv
import logging
import os
import queue
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from labeling.importing import formats
from labeling.importing.formats import FileCheck, ImportFileError, Record
from labeling.importing.rows import CleanRow, FieldMap, RowNormalizer, json_safe
from labeling.importing.writer import write_chunk
from labeling.models import ImportFormat, ImportJob, ImportSource, JobState, Label, Project

from .queue import queue_fill

logger = logging.getLogger(__name__)

MAX_ERRORS_KEPT = 200
MAX_WARNINGS_KEPT = 100
MAX_ATTEMPTS = 3
ERROR_WORKER_LOST = "The worker running this import stopped; it was started again ({attempt} of {limit})."
ERROR_WORKER_LOST_FINAL = "The worker running this import stopped {limit} times; the import was abandoned."
ERROR_UNEXPECTED = "The import stopped on an unexpected error ({error}); rows written so far are kept and re-running the import adds only what is missing."
ERROR_UPLOAD_TOO_LARGE = "The upload is larger than the import limit of {limit:,} bytes; nothing was imported."
ERROR_BAD_OPTION = "{name} must be {expected}."


@dataclass(frozen=True)
class ImportOptions:
    """What the user chose: the format, which fields hold text, time and label, and label handling."""

    format: str = ImportFormat.AUTO
    text_field: str | None = None
    time_field: str | None = None
    label_field: str | None = None
    label_map: dict[str, str] = field(default_factory=dict)
    create_missing_labels: bool = False
    unescape_html: bool = False
    encoding: str = "utf-8"
    # Import the text only, leaving any label column aside: every new example goes to the labeling queue.
    ignore_labels: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportOptions:
        fmt = data.get("format") or ImportFormat.AUTO
        if fmt not in ImportFormat.values:
            raise ImportFileError(ERROR_BAD_OPTION.format(name="format", expected=", ".join(ImportFormat.values)))
        label_map = data.get("label_map") or {}
        if not isinstance(label_map, dict):
            raise ImportFileError(ERROR_BAD_OPTION.format(name="label_map", expected="an object of value: label"))
        return cls(
            format=fmt,
            text_field=(data.get("text_field") or None),
            time_field=(data.get("time_field") or None),
            label_field=(data.get("label_field") or None),
            label_map={str(key): str(value) for key, value in label_map.items()},
            create_missing_labels=bool(data.get("create_missing_labels")),
            unescape_html=bool(data.get("unescape_html")),
            encoding=str(data.get("encoding") or "utf-8"),
            ignore_labels=bool(data.get("ignore_labels")),
        )


def parse_label_map(text: str) -> dict[str, str]:
    """Parse `1=spam,0=ham` into a mapping from values in the file to label names."""
    mapping: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ImportFileError(f"Label map entry {part.strip()!r} is not of the form value=label.")
        key, value = part.split("=", 1)
        mapping[key.strip()] = value.strip()
    return mapping


def import_job_create(
    *,
    project: Project,
    source: str,
    filename: str,
    options: ImportOptions,
    created_by: Any = None,
    upload: IO[bytes] | None = None,
    path: str | os.PathLike[str] | None = None,
    records: Iterable[dict[str, Any]] | None = None,
) -> ImportJob:
    """Store the file (an upload stream, a local path to copy, or JSON records) as a queued import job.

    An upload over FLYWHEEL_IMPORT_MAX_BYTES raises ImportFileError here, before any job exists.
    """
    job_dir = Path(settings.UPLOAD_DIR) / uuid.uuid4().hex
    job_dir.mkdir(parents=True)
    safe_name = Path(filename or "upload").name[:200] or "upload"
    target = job_dir / safe_name
    if upload is not None:
        try:
            _copy_limited(upload, target)
        except ImportFileError:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
    elif path is not None:
        shutil.copyfile(path, target)
    elif records is not None:
        import json

        with open(target, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False, default=str))
                handle.write("\n")
    else:
        raise ValueError("import_job_create needs upload, path or records")
    job = ImportJob.objects.create(
        project=project,
        created_by=created_by if getattr(created_by, "pk", None) else None,
        source=source,
        format=options.format,
        filename=safe_name,
        path=str(target),
        size_bytes=target.stat().st_size,
        options=asdict(options),
    )
    return job


def _copy_limited(upload: IO[bytes], target: Path) -> None:
    """Copy an upload in blocks, refusing it as soon as it passes the import size limit."""
    limit = settings.FLYWHEEL_IMPORT_MAX_BYTES
    declared = getattr(upload, "size", None)
    if isinstance(declared, int) and declared > limit:
        raise ImportFileError(formats.ERROR_TOO_LARGE.format(size=declared, limit=limit))
    written = 0
    with open(target, "wb") as handle:
        while block := upload.read(1 << 20):
            written += len(block)
            if written > limit:
                break
            handle.write(block)
    if written > limit:
        target.unlink()
        raise ImportFileError(ERROR_UPLOAD_TOO_LARGE.format(limit=limit))


def import_job_enqueue(*, job: ImportJob) -> None:
    """Queue the job for a worker once the current transaction commits."""
    from labeling.tasks import import_job_run_task

    import_job_run_task.delay_on_commit(job.pk)


def import_job_claim(*, job_id: int) -> bool:
    """Move a queued job to running; return False when another worker has it or it is finished."""
    now = timezone.now()
    claimed = ImportJob.objects.filter(pk=job_id, state=JobState.QUEUED).update(
        state=JobState.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, message=""
    )
    return claimed == 1


def import_job_run(*, job_id: int, on_progress: Callable[[ImportJob], None] | None = None) -> ImportJob:
    """Claim and run one import job; a job that is not queued is left as it is."""
    if not import_job_claim(job_id=job_id):
        return ImportJob.objects.get(pk=job_id)
    job = ImportJob.objects.select_related("project").get(pk=job_id)
    try:
        _run(job, on_progress)
    except ImportFileError as exc:
        job.errors = [{"line": None, "reason": str(exc)}, *job.errors][:MAX_ERRORS_KEPT]
        job.error_count += 1
        _finish(job, state=JobState.FAILED, message=str(exc))
    except Exception as exc:  # noqa: BLE001 - the job row must always say how it ended
        logger.exception("import job %s failed", job.pk)
        message = ERROR_UNEXPECTED.format(error=type(exc).__name__)
        job.errors = [{"line": None, "reason": message}, *job.errors][:MAX_ERRORS_KEPT]
        job.error_count += 1
        _finish(job, state=JobState.FAILED, message=message)
    return job


def _finish(job: ImportJob, *, state: str, message: str) -> None:
    job.state = state
    job.message = json_safe(message)
    job.result = json_safe(job.result)
    job.errors = json_safe(job.errors)
    job.finished_at = timezone.now()
    job.heartbeat_at = job.finished_at
    if state == JobState.SUCCEEDED:
        job.progress = 1.0
    job.save(
        update_fields=[
            "state",
            "message",
            "finished_at",
            "heartbeat_at",
            "progress",
            "result",
            "errors",
            "error_count",
            "report_path",
        ]
    )


@dataclass
class _Tally:
    rows_read: int = 0
    examples_created: int = 0
    duplicates: int = 0
    annotations_created: int = 0
    rows_rejected: int = 0
    rows_without_timestamp: int = 0
    rows_with_unparsed_timestamp: int = 0
    warnings: list[dict[str, Any]] = field(default_factory=list)


class _Report:
    """The rejected rows, all of them in a CSV file and the first ones in the job row."""

    def __init__(self, job: ImportJob) -> None:
        self.path = Path(settings.REPORT_DIR) / f"import-{job.pk}-rejected.csv"
        self.handle: IO[str] | None = None
        self.writer: Any = None
        self.kept: list[dict[str, Any]] = []
        self.count = 0

    def add(self, line: int, reason: str, raw: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_ERRORS_KEPT:
            self.kept.append({"line": line, "reason": reason})
        if self.handle is None:
            self.handle = open(self.path, "w", encoding="utf-8", errors="backslashreplace", newline="")  # noqa: SIM115 - closed in close()
            self.writer = csv.writer(self.handle)
            self.writer.writerow(["line", "reason", "row"])
        self.writer.writerow([line, reason, raw])

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _run(job: ImportJob, on_progress: Callable[[ImportJob], None] | None) -> None:
    options = ImportOptions.from_dict(job.options)
    check = formats.check_file(
        job.path,
        declared_format=options.format,
        encoding=options.encoding,
        max_bytes=settings.FLYWHEEL_IMPORT_MAX_BYTES,
    )
    tally = _Tally()
    report = _Report(job)
    try:
        with open(job.path, "rb") as handle:
            counter, text = formats.open_text(handle, check.encoding)
            fields, records = _open_records(check, text, job.path, options)
            labels = {label.name: label.pk for label in Label.objects.filter(project=job.project)}
            normalizer = RowNormalizer(
                fields=fields,
                label_names={name: name for name in labels},
                label_map=options.label_map,
                create_missing_labels=options.create_missing_labels,
                unescape_html=options.unescape_html,
                max_text_chars=settings.FLYWHEEL_IMPORT_MAX_TEXT_CHARS,
            )
            job.result = {"format": check.format, "columns": asdict(fields)}
            chunks = _chunks(records, normalizer, tally, report, settings.FLYWHEEL_IMPORT_CHUNK_ROWS)
            prepared = _with_new_labels(chunks, normalizer, counter, check.size_bytes)
            with _ReadAhead(prepared) as ahead:
                for chunk, new_labels, fraction in ahead:
                    if new_labels:
                        labels.update(_labels_create(job.project, new_labels))
                    written = write_chunk(
                        rows=chunk,
                        project_id=job.project_id,
                        job_id=job.pk,
                        label_ids=labels,
                        on_staged=ahead.request,
                    )
                    tally.examples_created += written.created
                    tally.duplicates += written.duplicates
                    tally.annotations_created += written.annotations_created
                    _save_progress(job, tally, report, fraction)
                    if on_progress is not None:
                        on_progress(job)
    finally:
        report.close()
    if tally.rows_read == 0:
        raise ImportFileError(formats.ERROR_EMPTY_FILE)
    _store_tally(job, tally, report)
    if tally.rows_rejected == tally.rows_read:
        _finish(
            job,
            state=JobState.FAILED,
            message=f"Every one of the {tally.rows_read:,} rows was rejected; nothing was imported.",
        )
    else:
        # Queue the new examples before the job reads as finished: they are claimable once it is.
        job.result["queued"] = queue_fill(project=job.project, import_job_id=job.pk)
        _finish(job, state=JobState.SUCCEEDED, message=import_summary(job.result))
        _hand_to_the_loop(job)


def _hand_to_the_loop(job: ImportJob) -> None:
    """Start what follows an import (featurizing its new examples); a failure there never fails the import."""
    from flywheel import loop

    try:
        with transaction.atomic():
            loop.import_succeeded(job=job)
    except Exception:  # noqa: BLE001 - the import itself is done and recorded; the next import retries the step
        logger.exception("import job %s: starting the steps after the import failed", job.pk)


def _open_records(check: FileCheck, text: Any, path: str, options: ImportOptions) -> tuple[FieldMap, Iterator[Record]]:
    if check.format == "csv":
        header, records = formats.csv_header_and_records(text, path=path)
        return _field_map(header, options), records
    records = formats.jsonl_records(text) if check.format == "jsonl" else formats.labelstudio_records(text)
    first = _first_record_with_fields(records)
    if first is None:
        raise ImportFileError(formats.ERROR_EMPTY_FILE)
    pending, head = first
    fields = _field_map(list(head.fields or {}), options)
    return fields, _chain(pending, records)


def _first_record_with_fields(records: Iterator[Record]) -> tuple[list[Record], Record] | None:
    """Read ahead to the first good record, keeping the bad ones before it for the report."""
    pending: list[Record] = []
    for record in records:
        pending.append(record)
        if record.fields is not None:
            return pending, record
        if len(pending) > 10_000:
            break
    if pending:
        first_bad = pending[0]
        raise ImportFileError(f"No row could be read; line {first_bad.line}: {first_bad.error}.")
    return None


def _chain(first: list[Record], rest: Iterator[Record]) -> Iterator[Record]:
    yield from first
    yield from rest


def _field_map(found: list[str], options: ImportOptions) -> FieldMap:
    text = formats.pick_field(found, options.text_field, formats.TEXT_FIELD_CANDIDATES, "text")
    if text is None:
        raise ImportFileError(
            formats.ERROR_NO_TEXT_FIELD.format(
                candidates=", ".join(formats.TEXT_FIELD_CANDIDATES), found=", ".join(found) or "none"
            )
        )
    time = formats.pick_field(found, options.time_field, formats.TIME_FIELD_CANDIDATES, "time")
    label = (
        None
        if options.ignore_labels
        else formats.pick_field(found, options.label_field, formats.LABEL_FIELD_CANDIDATES, "label")
    )
    return FieldMap(text=text, time=time, label=label)


def _chunks(
    records: Iterator[Record], normalizer: RowNormalizer, tally: _Tally, report: _Report, size: int
) -> Iterator[list[CleanRow]]:
    chunk: list[CleanRow] = []
    for record in records:
        tally.rows_read += 1
        if record.error is not None or record.fields is None:
            tally.rows_rejected += 1
            report.add(record.line, record.error or "no fields", record.raw)
            continue
        try:
            row = normalizer.normalize(record.line, record.fields, record.labels)
        except ValueError as exc:
            tally.rows_rejected += 1
            report.add(record.line, str(exc), record.raw)
            continue
        if row.observed_at is None:
            tally.rows_without_timestamp += 1
            if row.time_given:
                tally.rows_with_unparsed_timestamp += 1
            if len(tally.warnings) < MAX_WARNINGS_KEPT:
                reason = (
                    "timestamp not understood; imported without one"
                    if row.time_given
                    else "no timestamp; imported without one"
                )
                tally.warnings.append({"line": row.line, "reason": reason})
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _with_new_labels(
    chunks: Iterator[list[CleanRow]], normalizer: RowNormalizer, counter: formats.CountingReader, size: int
) -> Iterator[tuple[list[CleanRow], list[str], float]]:
    """Pair each chunk with the label names first seen in it and the share of the file read so far."""
    for chunk in chunks:
        new_labels = normalizer.new_labels[:]
        normalizer.new_labels.clear()
        yield chunk, new_labels, counter.bytes_read / max(size, 1)


_END = object()


class _ReadAhead:
    """Produce the next item in a thread while the caller waits on the database with the current one.

    Reading and cleaning a chunk is Python work; writing one mostly waits on PostgreSQL. The caller
    calls `request()` when it starts waiting (the chunk is staged), so the thread's Python work does
    not compete for the GIL with the caller's own. The thread touches no database connection.
    Use as a context manager: leaving it stops the thread.
    """

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._permits = threading.Semaphore(0)
        self._handoff: queue.SimpleQueue[tuple[Any, BaseException | None]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._requested = False
        self._thread = threading.Thread(target=self._produce, name="import-read-ahead", daemon=True)

    def __enter__(self) -> _ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._permits.release()
        self._thread.join()

    def __iter__(self) -> Iterator[Any]:
        while True:
            self.request()
            self._requested = False
            item, error = self._handoff.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item

    def request(self) -> None:
        """Let the thread produce the next item (once per item; later calls do nothing)."""
        if not self._requested:
            self._requested = True
            self._permits.release()

    def _produce(self) -> None:
        try:
            while True:
                self._permits.acquire()
                if self._stop.is_set():
                    return
                item = next(self._items, _END)
                self._handoff.put((item, None))
                if item is _END:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread and raised there
            self._handoff.put((_END, exc))


def _labels_create(project: Project, names: list[str]) -> dict[str, int]:
    start = (Label.objects.filter(project=project).order_by("-order").values_list("order", flat=True).first() or 0) + 1
    for offset, name in enumerate(names):
        Label.objects.get_or_create(project=project, name=name, defaults={"order": start + offset})
    return dict(Label.objects.filter(project=project, name__in=names).values_list("name", "pk"))


def _store_tally(job: ImportJob, tally: _Tally, report: _Report) -> None:
    job.result = {
        **job.result,
        "rows_read": tally.rows_read,
        "examples_created": tally.examples_created,
        "duplicates": tally.duplicates,
        "annotations_created": tally.annotations_created,
        "rows_rejected": tally.rows_rejected,
        "rows_without_timestamp": tally.rows_without_timestamp,
        "rows_with_unparsed_timestamp": tally.rows_with_unparsed_timestamp,
        "warnings": tally.warnings,
    }
    job.errors = report.kept
    job.error_count = report.count
    job.report_path = str(report.path) if report.count else ""


def _save_progress(job: ImportJob, tally: _Tally, report: _Report, fraction: float) -> None:
    _store_tally(job, tally, report)
    job.result = json_safe(job.result)
    job.errors = json_safe(job.errors)
    job.progress = min(max(fraction, 0.0), 0.99)
    job.heartbeat_at = timezone.now()
    job.save(update_fields=["progress", "heartbeat_at", "result", "errors", "error_count", "report_path"])


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number:,} {singular if number == 1 else plural}"


def import_summary(result: dict[str, Any]) -> str:
    """Say in one sentence what an import did, for the job page, the API and the command line."""
    parts = [_count(result.get("examples_created", 0), "example added", "examples added")]
    if result.get("duplicates"):
        parts.append(_count(result["duplicates"], "row already present", "rows already present") + " (skipped)")
    if result.get("annotations_created"):
        parts.append(_count(result["annotations_created"], "label stored", "labels stored"))
    if result.get("queued"):
        parts.append(_count(result["queued"], "example queued for labeling", "examples queued for labeling"))
    if result.get("rows_rejected"):
        parts.append(_count(result["rows_rejected"], "row rejected", "rows rejected") + " (see the report)")
    if result.get("rows_without_timestamp"):
        parts.append(
            _count(result["rows_without_timestamp"], "row", "rows")
            + " without a usable timestamp (imported without one)"
        )
    if not result.get("examples_created") and not result.get("annotations_created"):
        parts.append("nothing new: this data was already imported")
    return "; ".join(parts) + "."


def import_jobs_sweep(*, now: Any = None) -> int:
    """Requeue running jobs whose worker stopped sending heartbeats; fail them after MAX_ATTEMPTS."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.FLYWHEEL_JOB_STALE_SECONDS)
    swept = 0
    for job in ImportJob.objects.filter(state=JobState.RUNNING, heartbeat_at__lt=cutoff):
        if job.attempts >= MAX_ATTEMPTS:
            updated = ImportJob.objects.filter(pk=job.pk, state=JobState.RUNNING, heartbeat_at__lt=cutoff).update(
                state=JobState.FAILED, finished_at=now, message=ERROR_WORKER_LOST_FINAL.format(limit=MAX_ATTEMPTS)
            )
        else:
            with transaction.atomic():
                updated = ImportJob.objects.filter(pk=job.pk, state=JobState.RUNNING, heartbeat_at__lt=cutoff).update(
                    state=JobState.QUEUED,
                    message=ERROR_WORKER_LOST.format(attempt=job.attempts + 1, limit=MAX_ATTEMPTS),
                )
                if updated:
                    import_job_enqueue(job=job)
        swept += updated
    return swept


__all__ = [
    "ImportOptions",
    "ImportSource",
    "import_job_claim",
    "import_job_create",
    "import_job_enqueue",
    "import_job_run",
    "import_jobs_sweep",
    "import_summary",
    "parse_label_map",
]
