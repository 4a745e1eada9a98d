"""Importing CSV, JSON Lines and Label Studio exports: good data, real data, and every kind of bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from django.test import override_settings

from labeling.importing import formats
from labeling.importing.rows import ERROR_EMPTY_TEXT
from labeling.models import Annotation, Example, Label
from tests.labeling.factories import run_import

DEMO = Path(__file__).resolve().parents[2] / "demo" / "youtube_spam"
pytestmark = pytest.mark.django_db


def examples(project):
    return list(Example.objects.filter(project=project).order_by("id"))


def test_csv_with_text_time_and_label_columns(project):
    job = run_import(
        project,
        "text,observed_at,label,author\n"
        "Great video!,2015-02-24T11:35:52,ham,ann\n"
        "Buy followers at example.com,2015-02-25 10:00:00 -0800,spam,bob\n",
    )
    assert job.state == "succeeded", job.message
    assert job.result["examples_created"] == 2
    assert job.result["annotations_created"] == 2
    assert job.result["columns"] == {"text": "text", "time": "observed_at", "label": "label"}
    first, second = examples(project)
    assert first.text == "Great video!" and first.meta == {"author": "ann"}
    assert second.observed_at.isoformat() == "2015-02-25T18:00:00+00:00"
    annotation = Annotation.objects.get(example=second)
    assert (annotation.label.name, annotation.kind, annotation.labeler_name) == ("spam", "imported", "import")
    assert annotation.author_id is None and annotation.import_job_id == job.pk


def test_reimporting_the_same_file_adds_nothing_and_says_so(project):
    content = "text,label\nhello there,ham\nfree money,spam\n"
    run_import(project, content)
    again = run_import(project, content)
    assert again.state == "succeeded"
    assert again.result["examples_created"] == 0
    assert again.result["duplicates"] == 2
    assert again.result["annotations_created"] == 0
    assert "already imported" in again.message
    assert Example.objects.filter(project=project).count() == 2
    assert Annotation.objects.filter(example__project=project).count() == 2


def test_duplicates_inside_one_file_are_stored_once_but_conflicting_labels_are_kept(project):
    job = run_import(project, "text,label\nsame words,spam\nsame words,ham\n  same words ,spam\n")
    assert job.result["examples_created"] == 1
    assert job.result["duplicates"] == 2
    example = Example.objects.get(project=project)
    assert sorted(a.label.name for a in example.annotations.all()) == ["ham", "spam"]


def test_the_real_youtube_files_import_and_rows_without_date_are_reported_not_dropped(project):
    rows = 0
    no_time = 0
    for path in sorted(DEMO.glob("*.csv")):
        job = run_import(project, path.read_bytes(), path.name, label_map={"1": "spam", "0": "ham"}, unescape_html=True)
        assert job.state == "succeeded", job.message
        assert job.result["rows_rejected"] == 0
        rows += job.result["rows_read"]
        no_time += job.result["rows_without_timestamp"]
    assert rows == 1956
    assert no_time == 245  # the Eminem file's spam rows carry no DATE
    stored = Example.objects.filter(project=project)
    # Some undated spam repeats texts seen elsewhere, so it is stored once, with the first time seen.
    assert 200 <= stored.filter(observed_at__isnull=True).count() <= 245
    assert not stored.filter(text__contains="\ufeff").exists()
    assert not stored.filter(text__contains="&#39;").exists()
    spam = Annotation.objects.filter(example__project=project, label__name="spam").values("example").distinct()
    ham = Annotation.objects.filter(example__project=project, label__name="ham").values("example").distinct()
    assert spam.count() > 800 and ham.count() > 800


def test_jsonl_import_keeps_meta_and_numbers_as_epoch(project):
    lines = [
        {"text": "first", "observed_at": 1424800000, "label": "spam", "meta": {"source": "app"}},
        {"text": "second", "timestamp": "2015-02-24", "extra": [1, 2]},
        {"text": "third"},
    ]
    job = run_import(project, "\n".join(json.dumps(line) for line in lines) + "\n", "data.jsonl")
    assert job.state == "succeeded", job.message
    assert job.result["format"] == "jsonl"
    first, second, third = examples(project)
    assert first.observed_at.isoformat() == "2015-02-24T17:46:40+00:00"
    assert first.meta == {"meta": {"source": "app"}}
    assert second.observed_at is None  # the time field is taken from the first row: observed_at
    assert second.meta == {"timestamp": "2015-02-24", "extra": [1, 2]}
    assert job.result["rows_without_timestamp"] == 2


def test_labelstudio_export_with_annotations_from_two_people(project):
    tasks = [
        {
            "id": 7,
            "data": {"text": "win a prize now", "created": "2020-01-01T00:00:00Z"},
            "annotations": [
                {"completed_by": 1, "result": [{"type": "choices", "value": {"choices": ["spam"]}}]},
                {"completed_by": 2, "result": [{"type": "choices", "value": {"choices": ["Ham"]}}]},
                {"completed_by": 3, "was_cancelled": True, "result": [{"value": {"choices": ["spam"]}}]},
            ],
        },
        {"id": 8, "data": {"text": "nice song"}, "annotations": []},
    ]
    job = run_import(project, json.dumps(tasks, indent=2), "export.json")
    assert job.state == "succeeded", job.message
    assert job.result["format"] == "labelstudio"
    first, second = examples(project)
    assert first.meta == {"labelstudio_id": 7}
    assert first.observed_at.year == 2020
    labels = sorted((a.labeler_name, a.label.name) for a in first.annotations.all())
    assert labels == [("labelstudio:1", "spam"), ("labelstudio:2", "ham")]
    assert not second.annotations.exists()


def test_labelstudio_list_is_read_in_pieces_larger_than_one_block(project, monkeypatch):
    monkeypatch.setattr(formats, "CHECK_BLOCK", 64)
    tasks = [{"data": {"text": f"task number {n} " + "x" * (n % 150)}} for n in range(300)]
    job = run_import(project, json.dumps(tasks), "big.json")
    assert job.state == "succeeded", job.message
    assert job.result["examples_created"] == 300


def test_explicit_field_names_and_label_map(project):
    job = run_import(
        project,
        "CONTENT;WHEN;CLASS\nhello;2015-01-01;0\nbuy now;2015-01-02;1\n",
        text_field="CONTENT",
        time_field="WHEN",
        label_field="CLASS",
        label_map={"1": "spam", "0": "ham"},
    )
    assert job.state == "succeeded", job.message
    assert [a.label.name for a in Annotation.objects.order_by("example_id")] == ["ham", "spam"]


def test_unknown_labels_reject_the_row_and_the_report_lists_it(project):
    job = run_import(project, "text,label\ngood one,ham\nbad label here,spamm\nanother,spam\n")
    assert job.state == "succeeded"
    assert job.result["examples_created"] == 2
    assert job.result["rows_rejected"] == 1
    assert job.errors == [{"line": 3, "reason": "unknown label 'spamm' (project labels: ham, spam)"}]
    with open(job.report_path, encoding="utf-8") as handle:
        report = list(csv.reader(handle))
    assert report[0] == ["line", "reason", "row"]
    assert report[1][0] == "3" and "spamm" in report[1][2]
    assert "1 row rejected" in job.message


def test_create_missing_labels_adds_them_to_the_project(project):
    job = run_import(project, "text,label\nthe food was cold,complaint\n", create_missing_labels=True)
    assert job.state == "succeeded"
    assert Label.objects.filter(project=project, name="complaint").exists()
    assert Annotation.objects.get().label.name == "complaint"


def test_malformed_rows_are_rejected_with_line_numbers(project):
    job = run_import(
        project,
        'text,label\nfine,ham\ntoo,many,fields\n"",ham\n"multi\nline text",spam\nshort\nlast,ham\n',
    )
    assert job.state == "succeeded"
    reasons = {error["line"]: error["reason"] for error in job.errors}
    assert reasons == {3: "expected 2 fields, found 3", 4: ERROR_EMPTY_TEXT, 7: "expected 2 fields, found 1"}
    assert job.result["examples_created"] == 3
    assert job.result["rows_read"] == job.result["examples_created"] + job.result["rows_rejected"]


def test_invalid_json_lines_are_rejected_individually(project):
    job = run_import(project, '{"text": "ok"}\n{"text": broken}\n[1, 2]\n\n{"text": "also ok"}\n', "x.jsonl")
    assert job.state == "succeeded"
    assert [error["line"] for error in job.errors] == [2, 3]
    assert job.result["examples_created"] == 2


@override_settings(FLYWHEEL_IMPORT_MAX_TEXT_CHARS=10)
def test_text_over_the_length_limit_is_rejected(project):
    job = run_import(project, "text\nshort\nthis one is far too long\n")
    assert job.result["examples_created"] == 1
    assert "over the limit of 10" in job.errors[0]["reason"]


def test_wrong_encoding_fails_the_file_and_imports_nothing(project):
    job = run_import(project, "text\ncaf\u00e9 ok\nna\u00efve\n".encode("latin-1"))
    assert job.state == "failed"
    assert "not valid utf-8" in job.message and "line 2" in job.message
    assert Example.objects.count() == 0


def test_the_encoding_can_be_chosen(project):
    job = run_import(project, "text\ncaf\u00e9 ok\n".encode("latin-1"), encoding="latin-1")
    assert job.state == "succeeded", job.message
    assert Example.objects.get().text == "caf\u00e9 ok"


@pytest.mark.parametrize("content", [b"", b"   \n\n", b"\xef\xbb\xbf", b"text\n", b"[]", b"text\n\n\n"])
def test_empty_files_fail_clearly(project, content):
    job = run_import(project, content, "empty.csv" if not content.startswith(b"[") else "empty.json")
    assert job.state == "failed"
    assert "empty" in job.message or "no rows" in job.message
    assert Example.objects.count() == 0


def test_missing_text_column_fails_and_names_the_columns(project):
    job = run_import(project, "id,label\n1,spam\n")
    assert job.state == "failed"
    assert "No text column" in job.message and "id, label" in job.message


def test_a_named_field_that_is_absent_fails(project):
    job = run_import(project, "text,label\nhi,ham\n", time_field="when")
    assert job.state == "failed"
    assert "'when' is not in the file" in job.message


@override_settings(FLYWHEEL_IMPORT_MAX_BYTES=100)
def test_files_over_the_size_limit_fail_before_reading(project):
    job = run_import(project, "text\n" + "word " * 100 + "\n")
    assert job.state == "failed"
    assert "over the import limit of 100 bytes" in job.message
    assert Example.objects.count() == 0


def test_a_broken_labelstudio_list_fails_without_a_partial_import(project):
    job = run_import(project, '[{"data": {"text": "one"}}, {"data": {"text": "two"}', "broken.json")
    assert job.state == "failed"
    assert "not closed" in job.message or "malformed" in job.message
    assert Example.objects.count() == 0


def test_a_file_where_every_row_is_bad_fails(project):
    job = run_import(project, "text,label\na,nope\nb,nope\n")
    assert job.state == "failed"
    assert job.result["rows_rejected"] == 2
    assert Example.objects.count() == 0


def test_nul_bytes_and_lone_surrogates_never_reach_the_database(project):
    job = run_import(project, '{"text": "nul\\u0000here", "k": "\\ud800"}\n', "nul.jsonl")
    assert job.state == "succeeded", job.message
    example = Example.objects.get()
    assert example.text == "nulhere"
    assert "\x00" not in json.dumps(example.meta)


def test_unparseable_timestamps_are_counted_and_listed(project):
    job = run_import(project, "text,date\na,2015-01-01\nb,not a date\nc,\n")
    assert job.state == "succeeded"
    assert job.result["rows_without_timestamp"] == 2
    assert job.result["rows_with_unparsed_timestamp"] == 1
    assert [w["line"] for w in job.result["warnings"]] == [3, 4]


def test_html_stays_as_written_unless_asked(project):
    run_import(project, "text\n<b>bold</b> &amp; more\n")
    assert Example.objects.get().text == "<b>bold</b> &amp; more"


@override_settings(FLYWHEEL_IMPORT_CHUNK_ROWS=7)
def test_progress_and_counts_across_many_chunks(project):
    rows = "".join(f"row number {n},{'spam' if n % 2 else 'ham'}\n" for n in range(100))
    job = run_import(project, "text,label\n" + rows)
    assert job.state == "succeeded" and job.progress == 1.0
    assert job.result["examples_created"] == 100
    assert job.result["annotations_created"] == 100


@override_settings(FLYWHEEL_IMPORT_MAX_BYTES=100)
@pytest.mark.parametrize("declare_size", [True, False])
def test_an_upload_over_the_limit_is_refused_before_a_job_exists(project, declare_size):
    import io

    from labeling import services
    from labeling.importing.formats import ImportFileError
    from labeling.models import ImportJob

    upload = io.BytesIO(b"text\n" + b"word " * 100)
    if declare_size:
        upload.size = len(upload.getvalue())
    with pytest.raises(ImportFileError, match="import limit of 100 bytes"):
        services.import_job_create(
            project=project, source="upload", filename="big.csv", options=services.ImportOptions(), upload=upload
        )
    assert not ImportJob.objects.exists()


def test_infinite_and_nan_numbers_in_meta_are_stored_as_null(project):
    job = run_import(project, '{"text": "a", "label": "spam", "score": Infinity, "other": NaN}\n', "inf.jsonl")
    assert job.state == "succeeded", job.message
    assert Example.objects.get().meta == {"score": None, "other": None}


@override_settings(FLYWHEEL_IMPORT_CHUNK_ROWS=3)
def test_labels_on_repeats_in_later_chunks_attach_to_the_first_example_and_ids_follow_the_file(project):
    lines = [f"text number {n} {'x' * (n * 37 % 300)},ham" for n in range(8)]
    lines += ["text number 1 " + "x" * 37 + ",spam", "text number 0 ,spam"]
    job = run_import(project, "text,label\n" + "\n".join(lines) + "\n")
    assert job.state == "succeeded", job.message
    assert job.result["examples_created"] == 8 and job.result["duplicates"] == 2
    stored = examples(project)
    assert [example.text.split(" x")[0].strip() for example in stored] == [f"text number {n}" for n in range(8)]
    assert sorted(a.label.name for a in stored[1].annotations.all()) == ["ham", "spam"]
    assert sorted(a.label.name for a in stored[0].annotations.all()) == ["ham", "spam"]
    again = run_import(project, "text,label\n" + "\n".join(lines) + "\n")
    assert again.result["examples_created"] == 0 and again.result["annotations_created"] == 0
