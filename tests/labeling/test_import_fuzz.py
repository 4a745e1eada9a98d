"""Fuzzed imports: random bytes and random CSV / JSON shapes never crash and never import silently in part.

Every job must end `succeeded` or `failed`; every row read is accounted for as created, duplicate or
rejected; every rejected row is in the report with a line number; a failed job has written nothing.
"""

from __future__ import annotations

import csv
import io
import itertools
import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from labeling import services
from labeling.importing.rows import clean_text
from labeling.models import Example, Project
from tests.labeling.factories import run_import

pytestmark = pytest.mark.django_db
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_slugs = itertools.count()


def fresh_project() -> Project:
    return services.project_create(slug=f"fuzz-{next(_slugs)}", name="Fuzz", labels=[{"name": "spam"}, {"name": "ham"}])


def assert_accounted_for(project: Project, job) -> None:
    """Check the invariants that hold for any input whatsoever."""
    assert job.state in {"succeeded", "failed"}, job.state
    event(f"{job.state}, {'some' if job.error_count else 'no'} rows rejected")
    assert job.finished_at is not None
    assert job.message
    stored = Example.objects.filter(project=project).count()
    if job.state == "failed":
        assert stored == 0, f"failed job left {stored} examples: {job.message}"
        assert job.error_count >= 1
        return
    result = job.result
    assert stored == result["examples_created"]
    assert result["rows_read"] == result["examples_created"] + result["duplicates"] + result["rows_rejected"]
    assert job.error_count == result["rows_rejected"]
    assert len(job.errors) == min(job.error_count, 200)
    assert all(isinstance(error["line"], int) and error["line"] >= 1 and error["reason"] for error in job.errors)
    if job.error_count:
        with open(job.report_path, encoding="utf-8") as handle:
            assert sum(1 for _ in csv.reader(handle)) == job.error_count + 1
    assert job.progress == 1.0


@FUZZ
@given(content=st.binary(max_size=2000), name=st.sampled_from(["a.csv", "a.jsonl", "a.json", "a.bin"]))
def test_random_bytes(content, name):
    project = fresh_project()
    job = run_import(project, content, name)
    assert_accounted_for(project, job)


@FUZZ
@given(
    header=st.sampled_from([b"text,label\n", b'{"text": "x"}\n', b"[", b"\xef\xbb\xbftext\n"]),
    body=st.one_of(st.binary(max_size=1000), st.text(max_size=300).map(lambda text: text.encode("utf-8"))),
)
def test_random_bytes_after_a_plausible_start(header, body):
    project = fresh_project()
    job = run_import(project, header + body, "mixed.dat")
    assert_accounted_for(project, job)


cell = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
label_cell = st.sampled_from(["spam", "ham", "SPAM", "", " ham ", "eggs", "1"])
time_cell = st.one_of(
    st.sampled_from(["", "2015-02-24 11:35:52 -0800", "2013-11-07T06:20:48.123", "1424800000", "not a date"]),
    cell,
)


@st.composite
def csv_files(draw):
    header = ["text", "label", "observed_at"]
    extra = draw(st.lists(st.text(alphabet="abcxyz_", min_size=1, max_size=6), max_size=3, unique=True))
    header += [name for name in extra if name not in header]
    rows = []
    for _ in range(draw(st.integers(0, 25))):
        row = [draw(cell), draw(label_cell), draw(time_cell)] + [draw(cell) for _ in header[3:]]
        if draw(st.integers(0, 9)) == 0:  # a ragged row now and then
            row = row[: draw(st.integers(0, len(row)))] + [draw(cell) for _ in range(draw(st.integers(0, 2)))]
        rows.append(row)
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue(), rows


@FUZZ
@given(data=csv_files())
def test_random_csv_shapes(data):
    content, rows = data
    project = fresh_project()
    job = run_import(project, content, "shape.csv")
    assert_accounted_for(project, job)
    if job.state == "succeeded":
        written = {clean_text(row[0], unescape_html=False) for row in rows if row}
        assert set(Example.objects.filter(project=project).values_list("text", flat=True)) <= written


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
json_rows = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"text": st.one_of(st.text(max_size=40), json_values)},
        optional={"label": label_cell, "observed_at": st.one_of(time_cell, json_values), "meta": json_values},
    ),
)


@FUZZ
@given(rows=st.lists(json_rows, max_size=20), garbage=st.sampled_from(["", "{broken\n", "\x00\n", "[1,\n"]))
def test_random_json_lines(rows, garbage):
    project = fresh_project()
    content = "\n".join(json.dumps(row) for row in rows) + "\n" + garbage
    job = run_import(project, content, "rows.jsonl")
    assert_accounted_for(project, job)


ls_task = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"data": st.one_of(st.fixed_dictionaries({"text": st.text(max_size=30)}), json_values)},
        optional={
            "id": st.integers(),
            "annotations": st.lists(
                st.one_of(
                    json_values,
                    st.fixed_dictionaries(
                        {"result": st.lists(st.fixed_dictionaries({"value": st.fixed_dictionaries(
                            {"choices": st.lists(label_cell, max_size=2)})}), max_size=2)},
                        optional={"completed_by": st.integers(0, 3), "was_cancelled": st.booleans()},
                    ),
                ),
                max_size=3,
            ),
        },
    ),
)  # fmt: skip


@FUZZ
@given(tasks=st.lists(ls_task, max_size=12), truncate=st.integers(0, 40))
def test_random_labelstudio_exports(tasks, truncate):
    project = fresh_project()
    content = json.dumps(tasks, indent=1)
    if truncate:
        content = content[: max(1, len(content) - truncate)]
    job = run_import(project, content, "export.json")
    assert_accounted_for(project, job)
