"""Stream a project's labels as CSV, JSON Lines or a Label Studio task list, in constant memory."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from labeling.models import Annotation, Example, Project

EXPORT_FORMATS = {
    "csv": ("text/csv", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "labelstudio": ("application/json", "json"),
}
EXPORT_COLUMNS = [
    "example_id",
    "text",
    "label",
    "kind",
    "status",
    "annotator",
    "confidence",
    "observed_at",
    "labeled_at",
    "origin",
]
_BATCH = 2000


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _annotation_rows(project: Project) -> Iterator[dict[str, Any]]:
    """Yield one dict per annotation, ordered by example, reading in keyset-paginated batches."""
    last_id = 0
    while True:
        batch = list(
            Annotation.objects.filter(example__project=project, pk__gt=last_id)
            .select_related("example", "label", "author")
            .order_by("pk")[:_BATCH]
        )
        if not batch:
            return
        for annotation in batch:
            example = annotation.example
            yield {
                "example_id": example.pk,
                "text": example.text,
                "label": annotation.label.name,
                "kind": annotation.kind,
                "status": annotation.status,
                "annotator": annotation.author.username if annotation.author_id else annotation.labeler_name,
                "confidence": annotation.confidence,
                "observed_at": _iso(example.observed_at),
                "labeled_at": _iso(annotation.created_at),
                "origin": example.origin,
            }
        last_id = batch[-1].pk


def export_stream(*, project: Project, fmt: str) -> Iterator[str]:
    """Yield the export in pieces; `fmt` is one of EXPORT_FORMATS."""
    if fmt == "csv":
        return _csv(project)
    if fmt == "jsonl":
        return (json.dumps(row, ensure_ascii=False) + "\n" for row in _annotation_rows(project))
    if fmt == "labelstudio":
        return _labelstudio(project)
    raise ValueError(f"Unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}.")


def _csv(project: Project) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    for number, row in enumerate(_annotation_rows(project), start=1):
        writer.writerow(row)
        if number % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _labelstudio(project: Project) -> Iterator[str]:
    """Yield a JSON list of tasks, one per labeled example, each annotation as a `choices` result."""
    yield "["
    first = True
    last_id = 0
    while True:
        examples = list(
            Example.objects.filter(project=project, pk__gt=last_id, annotations__isnull=False)
            .distinct()
            .prefetch_related("annotations__label", "annotations__author")
            .order_by("pk")[:_BATCH]
        )
        if not examples:
            break
        for example in examples:
            task = {
                "id": example.pk,
                "data": {"text": example.text, "observed_at": _iso(example.observed_at), **_scalar_meta(example.meta)},
                "annotations": [
                    {
                        "id": annotation.pk,
                        "completed_by": annotation.author.username if annotation.author_id else annotation.labeler_name,
                        "created_at": _iso(annotation.created_at),
                        "result": [
                            {
                                "from_name": "label",
                                "to_name": "text",
                                "type": "choices",
                                "value": {"choices": [annotation.label.name]},
                            }
                        ],
                        "meta": {
                            "kind": annotation.kind,
                            "status": annotation.status,
                            "confidence": annotation.confidence,
                        },
                    }
                    for annotation in example.annotations.all()
                ],
            }
            yield ("" if first else ",\n") + json.dumps(task, ensure_ascii=False)
            first = False
        last_id = examples[-1].pk
    yield "]\n"


def _scalar_meta(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict):
        return {}
    return {key: value for key, value in meta.items() if key not in {"text", "observed_at"}}
