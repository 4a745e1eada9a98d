"""Exports carry text, label, provenance, annotator and timestamps in CSV, JSON Lines and Label Studio JSON."""

from __future__ import annotations

import csv
import io
import json

import pytest

from labeling import services
from labeling.models import Annotation, AnnotationKind, Example
from tests.labeling.factories import run_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled(project, make_user):
    run_import(project, 'text,label,observed_at\nbuy "cheap" pills,spam,2015-01-01T00:00:00\nlovely song,ham,\n')
    person = make_user("rita")
    example = Example.objects.get(text="lovely song")
    Annotation.objects.create(
        example=example, label=project.labels.get(name="spam"), author=person, kind=AnnotationKind.HUMAN
    )
    return project


def collect(project, fmt: str) -> str:
    return "".join(services.export_stream(project=project, fmt=fmt))


def test_csv_has_one_row_per_annotation_with_provenance(labeled):
    rows = list(csv.DictReader(io.StringIO(collect(labeled, "csv"))))
    assert [(row["text"], row["label"], row["kind"], row["annotator"]) for row in rows] == [
        ('buy "cheap" pills', "spam", "imported", "import"),
        ("lovely song", "ham", "imported", "import"),
        ("lovely song", "spam", "human", "rita"),
    ]
    assert rows[0]["observed_at"] == "2015-01-01T00:00:00+00:00"
    assert rows[1]["observed_at"] == ""
    assert all(row["labeled_at"] for row in rows)


def test_jsonl_round_trips_into_another_project(labeled, other_project):
    exported = collect(labeled, "jsonl")
    records = [json.loads(line) for line in exported.splitlines()]
    assert {record["label"] for record in records} == {"spam", "ham"}
    assert records[2]["annotator"] == "rita" and records[2]["kind"] == "human"
    job = run_import(other_project, exported, "labels.jsonl", create_missing_labels=True)
    assert job.state == "succeeded", job.message
    assert job.result["examples_created"] == 2


def test_labelstudio_export_reimports_with_every_annotation(labeled, other_project):
    exported = collect(labeled, "labelstudio")
    tasks = json.loads(exported)
    assert len(tasks) == 2
    song = next(task for task in tasks if task["data"]["text"] == "lovely song")
    assert sorted(a["result"][0]["value"]["choices"][0] for a in song["annotations"]) == ["ham", "spam"]
    job = run_import(other_project, exported, "ls.json", create_missing_labels=True)
    assert job.state == "succeeded", job.message
    assert job.result["annotations_created"] == 3


def test_an_empty_project_exports_valid_empty_files(project):
    assert collect(project, "csv").splitlines()[0].startswith("example_id,text,label")
    assert json.loads(collect(project, "labelstudio")) == []
    assert collect(project, "jsonl") == ""


def test_unknown_format_is_refused(project):
    with pytest.raises(ValueError, match="Unknown export format"):
        collect(project, "xml")
