"""Write clean rows in chunks: examples deduplicated by content hash, imported labels once each.

PostgreSQL takes a COPY of the rows and their labels into temporary tables, then one statement that
inserts the new examples (ON CONFLICT DO NOTHING) and the labels of those, all on the server; a
second statement stores labels of rows whose text was already there. Other databases take
bulk_create with ignore_conflicts. Both are safe to re-run on the same file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from labeling.models import Annotation, AnnotationKind, AnnotationStatus, Example, ExampleOrigin

from .rows import CleanRow

# Lookups on the generic path: IN lists of at most this many values (SQLite's driver keeps every
# prepared statement, and one with 10,000 values is large) and no ORDER BY (the models' ordering by
# id makes SQLite walk the project's rows instead of probing the hash index).
_LOOKUP_BATCH = 500
_ROWS_TABLE = "flywheel_import_rows"
_LABELS_TABLE = "flywheel_import_labels"
_EXAMPLE_COLUMNS = "(project_id, text, meta, observed_at, content_hash, origin, ingested_at, import_job_id)"
# The LLM-label columns are written as their empty values: imported labels have no model, prompt or probabilities.
_ANNOTATION_COLUMNS = (
    "(example_id, label_id, labeler_name, kind, status, created_at, import_job_id, "
    "labeler_model, prompt_version, probabilities, auto_accepted)"
)
_ANNOTATION_LLM_EMPTY = "'', '', '{}'::jsonb, false"
_INSERT_EXAMPLES = (
    f"INSERT INTO {Example._meta.db_table} {_EXAMPLE_COLUMNS} "
    "SELECT %(project)s, text, meta::jsonb, observed_at, content_hash, %(origin)s, %(now)s, %(job)s "
    # Ids follow the file: COPY may place rows out of order in the table (it reuses free space).
    f"FROM {_ROWS_TABLE} ORDER BY n ON CONFLICT (project_id, content_hash) DO NOTHING"
)
# New examples and their labels in one statement: the labels need the ids the insert returns.
# Returns the count of each and the positions of rows whose text was already stored.
_INSERT_EXAMPLES_AND_LABELS = (
    f"WITH ins AS ({_INSERT_EXAMPLES} RETURNING id, content_hash), "
    f"placed AS MATERIALIZED (SELECT r.n, ins.id FROM {_ROWS_TABLE} r "
    "LEFT JOIN ins ON ins.content_hash = r.content_hash), "
    f"ann AS (INSERT INTO {Annotation._meta.db_table} {_ANNOTATION_COLUMNS} "
    f"SELECT p.id, l.label_id, l.labeler, %(kind)s, %(status)s, %(now)s, %(job)s, {_ANNOTATION_LLM_EMPTY} "
    f"FROM {_LABELS_TABLE} l JOIN placed p ON p.n = l.n WHERE p.id IS NOT NULL RETURNING 1) "
    "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM ann), "
    "ARRAY(SELECT n FROM placed WHERE id IS NULL)"
)
# Labels of rows whose text was already stored: look each example up by its hash (one index probe,
# kept per row by LIMIT 1) and skip labels it already has.
_INSERT_LABELS_OF_EXISTING = (
    "WITH wanted AS MATERIALIZED (SELECT l.label_id, l.labeler, r.content_hash "
    f"FROM unnest(%(positions)s::integer[]) AS m(n) JOIN {_LABELS_TABLE} l ON l.n = m.n "
    f"JOIN {_ROWS_TABLE} r ON r.n = l.n) "
    f"INSERT INTO {Annotation._meta.db_table} {_ANNOTATION_COLUMNS} "
    f"SELECT e.id, w.label_id, w.labeler, %(kind)s, %(status)s, %(now)s, %(job)s, {_ANNOTATION_LLM_EMPTY} "
    "FROM wanted w "
    f"CROSS JOIN LATERAL (SELECT id FROM {Example._meta.db_table} "
    "WHERE project_id = %(project)s AND content_hash = w.content_hash LIMIT 1) e "
    "ON CONFLICT DO NOTHING"
)


@dataclass
class ChunkResult:
    created: int
    duplicates: int
    annotations_created: int


def write_chunk(
    *,
    rows: Sequence[CleanRow],
    project_id: int,
    job_id: int | None,
    label_ids: dict[str, int],
    on_staged: Callable[[], None] | None = None,
) -> ChunkResult:
    """Insert one chunk in its own transaction and return what it added.

    `on_staged` is called once the rows are handed over and the database is left to work on them.
    """
    unique: dict[str, CleanRow] = {}
    for row in rows:
        unique.setdefault(row.content_hash, row)
    nested = connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql":
            created, annotations = _write_postgresql(
                rows, unique, project_id, job_id, label_ids, nested=nested, on_staged=on_staged
            )
        else:
            if on_staged is not None:
                on_staged()
            created_ids = _insert_examples_generic(list(unique.values()), project_id, job_id)
            annotations = _insert_annotations(rows, project_id, job_id, label_ids, created_ids)
            created = len(created_ids)
    return ChunkResult(created=created, duplicates=len(rows) - created, annotations_created=annotations)


def _write_postgresql(
    rows: Sequence[CleanRow],
    unique: dict[str, CleanRow],
    project_id: int,
    job_id: int | None,
    label_ids: dict[str, int],
    *,
    nested: bool,
    on_staged: Callable[[], None] | None,
) -> tuple[int, int]:
    """Stage the chunk with COPY and insert examples and labels on the server; return both counts."""
    position = dict(zip(unique, range(len(unique)), strict=True))
    labels: dict[tuple[int, int, str], None] = {}
    for row in rows:
        if row.labels:
            n = position[row.content_hash]
            for name, labeler in row.labels:
                labels[(n, label_ids[name], labeler)] = None
    params = {
        "project": project_id,
        "job": job_id,
        "now": timezone.now(),
        "origin": ExampleOrigin.IMPORTED,
        "kind": AnnotationKind.IMPORTED,
        "status": AnnotationStatus.SUBMITTED,
    }
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_ROWS_TABLE} "
            "(n integer, text text, meta text, observed_at timestamptz, content_hash text) ON COMMIT DELETE ROWS"
        )
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_LABELS_TABLE} "
            "(n integer, label_id bigint, labeler text) ON COMMIT DELETE ROWS"
        )
        if nested:
            # ON COMMIT empties the tables only at a real commit; inside an outer transaction the
            # rows of an earlier chunk would still be there.
            cursor.execute(f"TRUNCATE {_ROWS_TABLE}, {_LABELS_TABLE}")
        # The staging tables have no statistics, so the planner's estimates are far too high and
        # would switch on JIT compilation, which costs more per chunk than the chunk's work.
        cursor.execute("SET LOCAL jit = off")
        raw = cursor.cursor
        with raw.copy(f"COPY {_ROWS_TABLE} (n, text, meta, observed_at, content_hash) FROM STDIN") as copy:
            write = copy.write_row
            for n, row in enumerate(unique.values()):
                write((n, row.text, row.meta_json, row.observed_at, row.content_hash))
        if labels:
            with raw.copy(f"COPY {_LABELS_TABLE} (n, label_id, labeler) FROM STDIN") as copy:
                write = copy.write_row
                for key in labels:
                    write(key)
        if on_staged is not None:
            on_staged()
        if not labels:
            cursor.execute(_INSERT_EXAMPLES, params)
            return cursor.rowcount, 0
        cursor.execute(_INSERT_EXAMPLES_AND_LABELS, params)
        created, annotations, already_stored = cursor.fetchone()
        if already_stored:
            stored = set(already_stored)
            if any(n in stored for n, _, _ in labels):
                cursor.execute(_INSERT_LABELS_OF_EXISTING, {**params, "positions": already_stored})
                annotations += cursor.rowcount
        return created, annotations


def _batched(values: Iterable[Any]) -> Iterator[list[Any]]:
    """Split the values of an IN lookup into lists of at most _LOOKUP_BATCH."""
    items = list(values)
    for start in range(0, len(items), _LOOKUP_BATCH):
        yield items[start : start + _LOOKUP_BATCH]


def _insert_examples_generic(rows: list[CleanRow], project_id: int, job_id: int | None) -> dict[str, int]:
    hashes = [row.content_hash for row in rows]
    existing: set[str] = set()
    for batch in _batched(hashes):
        existing.update(
            Example.objects.filter(project_id=project_id, content_hash__in=batch)
            .order_by()
            .values_list("content_hash", flat=True)
        )
    now = timezone.now()
    fresh = [
        Example(
            project_id=project_id,
            text=row.text,
            meta=json.loads(row.meta_json),
            observed_at=row.observed_at,
            content_hash=row.content_hash,
            origin=ExampleOrigin.IMPORTED,
            ingested_at=now,
            import_job_id=job_id,
        )
        for row in rows
        if row.content_hash not in existing
    ]
    Example.objects.bulk_create(fresh, batch_size=500, ignore_conflicts=True)
    created: dict[str, int] = {}
    for batch in _batched(example.content_hash for example in fresh):
        created.update(
            Example.objects.filter(project_id=project_id, content_hash__in=batch, import_job_id=job_id, ingested_at=now)
            .order_by()
            .values_list("content_hash", "id")
        )
    return created


def _insert_annotations(
    rows: Sequence[CleanRow],
    project_id: int,
    job_id: int | None,
    label_ids: dict[str, int],
    created_ids: dict[str, int],
) -> int:
    labeled = [row for row in rows if row.labels]
    if not labeled:
        return 0
    example_ids = dict(created_ids)
    missing = {row.content_hash for row in labeled} - example_ids.keys()
    for batch in _batched(missing):
        example_ids.update(
            Example.objects.filter(project_id=project_id, content_hash__in=batch)
            .order_by()
            .values_list("content_hash", "id")
        )
    wanted: dict[tuple[int, int, str], None] = {}
    for row in labeled:
        for name, labeler in row.labels:
            wanted[(example_ids[row.content_hash], label_ids[name], labeler)] = None
    existing: set[tuple[int, int, str]] = set()
    for batch in _batched({key[0] for key in wanted}):
        existing.update(
            Annotation.objects.filter(example_id__in=batch, kind=AnnotationKind.IMPORTED)
            .order_by()
            .values_list("example_id", "label_id", "labeler_name")
        )
    now = timezone.now()
    fresh = [
        Annotation(
            example_id=example_id,
            label_id=label_id,
            labeler_name=labeler,
            kind=AnnotationKind.IMPORTED,
            status=AnnotationStatus.SUBMITTED,
            created_at=now,
            import_job_id=job_id,
        )
        for (example_id, label_id, labeler) in wanted
        if (example_id, label_id, labeler) not in existing
    ]
    Annotation.objects.bulk_create(fresh, batch_size=1000, ignore_conflicts=True)
    return len(fresh)
