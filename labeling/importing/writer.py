"""Write clean rows in chunks: examples deduplicated by content hash, imported labels once each.

PostgreSQL takes a COPY into a temporary table and one INSERT … ON CONFLICT DO NOTHING RETURNING;
other databases take bulk_create with ignore_conflicts. Both are safe to re-run on the same file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone

from labeling.models import Annotation, AnnotationKind, AnnotationStatus, Example, ExampleOrigin

from .rows import CleanRow

_STAGE_TABLE = "flywheel_import_stage"


@dataclass
class ChunkResult:
    created: int
    duplicates: int
    annotations_created: int


def write_chunk(
    *, rows: Sequence[CleanRow], project_id: int, job_id: int | None, label_ids: dict[str, int]
) -> ChunkResult:
    """Insert one chunk in its own transaction and return what it added."""
    unique: dict[str, CleanRow] = {}
    for row in rows:
        unique.setdefault(row.content_hash, row)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            created_ids = _insert_examples_postgresql(list(unique.values()), project_id, job_id)
        else:
            created_ids = _insert_examples_generic(list(unique.values()), project_id, job_id)
        annotations = _insert_annotations(rows, project_id, job_id, label_ids, created_ids)
    return ChunkResult(
        created=len(created_ids), duplicates=len(rows) - len(created_ids), annotations_created=annotations
    )


def _insert_examples_postgresql(rows: list[CleanRow], project_id: int, job_id: int | None) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE_TABLE} "
            "(text text, meta text, observed_at timestamptz, content_hash text) ON COMMIT DELETE ROWS"
        )
        # ON COMMIT empties the table only at a real commit; inside an outer transaction the
        # rows of an earlier chunk would still be there.
        cursor.execute(f"TRUNCATE {_STAGE_TABLE}")
        raw = cursor.cursor
        with raw.copy(f"COPY {_STAGE_TABLE} (text, meta, observed_at, content_hash) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((row.text, row.meta_json, row.observed_at, row.content_hash))
        cursor.execute(
            f"INSERT INTO {Example._meta.db_table} "
            "(project_id, text, meta, observed_at, content_hash, origin, ingested_at, import_job_id) "
            f"SELECT %s, text, meta::jsonb, observed_at, content_hash, %s, %s, %s FROM {_STAGE_TABLE} "
            "ON CONFLICT (project_id, content_hash) DO NOTHING RETURNING content_hash, id",
            [project_id, ExampleOrigin.IMPORTED, timezone.now(), job_id],
        )
        return dict(cursor.fetchall())


def _insert_examples_generic(rows: list[CleanRow], project_id: int, job_id: int | None) -> dict[str, int]:
    hashes = [row.content_hash for row in rows]
    existing = set(
        Example.objects.filter(project_id=project_id, content_hash__in=hashes).values_list("content_hash", flat=True)
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
    fresh_hashes = [example.content_hash for example in fresh]
    return dict(
        Example.objects.filter(
            project_id=project_id, content_hash__in=fresh_hashes, import_job_id=job_id, ingested_at=now
        ).values_list("content_hash", "id")
    )


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
    if missing:
        example_ids.update(
            Example.objects.filter(project_id=project_id, content_hash__in=missing).values_list("content_hash", "id")
        )
    wanted: dict[tuple[int, int, str], None] = {}
    for row in labeled:
        for name, labeler in row.labels:
            wanted[(example_ids[row.content_hash], label_ids[name], labeler)] = None
    existing = set(
        Annotation.objects.filter(example_id__in={key[0] for key in wanted}, kind=AnnotationKind.IMPORTED).values_list(
            "example_id", "label_id", "labeler_name"
        )
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
