"""Check a file as a whole, then read it record by record in constant memory.

A file-level problem (size, encoding, emptiness, no text column, not the format it claims)
raises `ImportFileError` before any row is written; a row-level problem becomes a
`Record` with `error` set, so the caller can import the good rows and report the bad ones.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

CHECK_BLOCK = 1 << 20
MAX_JSON_ELEMENT_CHARS = 16 * 1024 * 1024
csv.field_size_limit(16 * 1024 * 1024)

FORMATS = ("csv", "jsonl", "labelstudio")
TEXT_FIELD_CANDIDATES = ("text", "content", "body", "message", "comment", "sentence", "document")
TIME_FIELD_CANDIDATES = (
    "observed_at",
    "timestamp",
    "created_at",
    "tweet_created",
    "date",
    "datetime",
    "time",
    "created",
)
LABEL_FIELD_CANDIDATES = ("label", "class", "category")

ERROR_EMPTY_FILE = "The file is empty: there are no rows to import."
ERROR_TOO_LARGE = "The file is {size:,} bytes, over the import limit of {limit:,} bytes."
ERROR_ENCODING = (
    "The file is not valid {encoding} (first bad byte at line {line}, byte {offset:,}). "
    "Save it as UTF-8, or choose the encoding it was written in."
)
ERROR_UNKNOWN_ENCODING = "Unknown encoding {encoding!r}."
ERROR_NO_HEADER = "The CSV file has no header row naming its columns."
ERROR_NO_TEXT_FIELD = (
    "No text column: none of {candidates} is present. Columns found: {found}. Name it with the text field option."
)
ERROR_MISSING_FIELD = "The {role} field {name!r} is not in the file. Columns found: {found}."
ERROR_NOT_LABELSTUDIO = "A Label Studio export is a JSON list of tasks; this file does not start with '['."
ERROR_BAD_JSON_LIST = "The JSON list is malformed near character {offset:,}: {reason}."


class ImportFileError(Exception):
    """The file as a whole cannot be imported; nothing has been written."""


@dataclass(frozen=True)
class FileCheck:
    format: str
    size_bytes: int
    encoding: str


@dataclass
class Record:
    """One source record: its first line number, its fields or an error, and its raw text for the report."""

    line: int
    fields: dict[str, Any] | None = None
    error: str | None = None
    raw: str = ""
    labels: list[tuple[str, str]] = field(default_factory=list)


class CountingReader(io.RawIOBase):
    """Wrap a binary file and count the bytes read, so progress can be reported from any reader."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.bytes_read += size
        return size


def normalize_encoding(encoding: str | None) -> str:
    name = (encoding or "utf-8").strip() or "utf-8"
    try:
        codec = codecs.lookup(name)
    except LookupError as exc:
        raise ImportFileError(ERROR_UNKNOWN_ENCODING.format(encoding=name)) from exc
    return "utf-8-sig" if codec.name in {"utf-8", "utf-8-sig"} else codec.name


def check_file(path: str | os.PathLike[str], *, declared_format: str, encoding: str, max_bytes: int) -> FileCheck:
    """Check size, emptiness and encoding of the whole file, and settle its format."""
    size = os.path.getsize(path)
    if size > max_bytes:
        raise ImportFileError(ERROR_TOO_LARGE.format(size=size, limit=max_bytes))
    codec = normalize_encoding(encoding)
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    first_text = ""
    line = 1
    offset = 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHECK_BLOCK)
            final = not block
            try:
                text = decoder.decode(block, final=final)
            except UnicodeDecodeError as exc:
                bad_at = offset + max(exc.start, 0)
                line += block[: max(exc.start, 0)].count(b"\n")
                raise ImportFileError(
                    ERROR_ENCODING.format(encoding=codec.replace("-sig", ""), line=line, offset=bad_at)
                ) from exc
            if len(first_text) < 4096 and text:
                first_text += text[:4096]
            if final:
                break
            line += block.count(b"\n")
            offset += len(block)
    stripped = first_text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise ImportFileError(ERROR_EMPTY_FILE)
    fmt = declared_format if declared_format in FORMATS else _detect_format(str(path), stripped)
    if fmt == "labelstudio" and not stripped.startswith("["):
        raise ImportFileError(ERROR_NOT_LABELSTUDIO)
    return FileCheck(format=fmt, size_bytes=size, encoding=codec)


def _detect_format(path: str, head: str) -> str:
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if lower.endswith(".json"):
        return "labelstudio" if head.startswith("[") else "jsonl"
    if lower.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if head.startswith("["):
        return "labelstudio"
    if head.startswith("{"):
        return "jsonl"
    return "csv"


def pick_field(found: list[str], requested: str | None, candidates: tuple[str, ...], role: str) -> str | None:
    """Return the requested field, or the first candidate present (case-insensitive), or None."""
    if requested:
        if requested in found:
            return requested
        folded = {name.casefold(): name for name in found}
        if requested.casefold() in folded:
            return folded[requested.casefold()]
        raise ImportFileError(ERROR_MISSING_FIELD.format(role=role, name=requested, found=", ".join(found) or "none"))
    folded = {name.casefold(): name for name in found}
    for candidate in candidates:
        if candidate in folded:
            return folded[candidate]
    return None


def open_text(handle: IO[bytes], encoding: str) -> tuple[CountingReader, io.TextIOWrapper]:
    counter = CountingReader(handle)
    text = io.TextIOWrapper(io.BufferedReader(counter, CHECK_BLOCK), encoding=encoding, newline="")
    return counter, text


def csv_header_and_records(text: io.TextIOWrapper, *, path: str) -> tuple[list[str], Iterator[Record]]:
    """Read the header, then yield one Record per data row (blank lines skipped)."""
    sample = text.read(64 * 1024)
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel_tab if path.lower().endswith(".tsv") else csv.excel
    if not path.lower().endswith(".tsv"):
        try:
            dialect = csv.Sniffer().sniff(sample.split("\n", 1)[0] or sample, delimiters=",;\t|")
            dialect.doublequote = True
            dialect.quotechar = '"'
        except csv.Error:
            dialect = csv.excel
    stream = _prepend(sample, text)
    reader = csv.reader(stream, dialect)
    try:
        header = next(reader)
    except StopIteration as exc:
        raise ImportFileError(ERROR_EMPTY_FILE) from exc
    except csv.Error as exc:
        raise ImportFileError(f"The header row cannot be read: {exc}.") from exc
    header = [name.strip().lstrip("\ufeff").strip() for name in header]
    if not any(header):
        raise ImportFileError(ERROR_NO_HEADER)
    header = _unique_names(header)
    return header, _csv_records(reader, header)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for position, name in enumerate(names, start=1):
        base = name or f"column_{position}"
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.append(base if count == 0 else f"{base}_{count + 1}")
    return result


def _prepend(first: str, rest: io.TextIOWrapper) -> Iterator[str]:
    """Return the lines of `first` followed by the rest of the stream, keeping newlines for the csv module.

    A line cut at the end of `first` is completed with the stream's next line; the remaining lines
    come straight from the stream, with no Python code per line.
    """
    lines = io.StringIO(first).readlines()
    if lines and not lines[-1].endswith(("\n", "\r")):
        following = next(rest, None)
        if following is not None:
            lines[-1] += following
    return itertools.chain(lines, rest)


def _csv_records(reader: Any, header: list[str]) -> Iterator[Record]:
    width = len(header)
    last_line = reader.line_num
    while True:
        start = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last_line = reader.line_num
            yield Record(line=start, error=f"malformed CSV row: {exc}", raw="")
            continue
        last_line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        raw = ",".join(row)
        if len(row) != width:
            yield Record(line=start, error=f"expected {width} fields, found {len(row)}", raw=raw)
            continue
        yield Record(line=start, fields=dict(zip(header, row)), raw=raw)  # noqa: B905 - lengths checked above


def jsonl_records(text: io.TextIOWrapper) -> Iterator[Record]:
    """Yield one Record per non-blank line; a line that is not a JSON object is a row error."""
    for number, line in enumerate(text, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            value = json.loads(stripped)
        except (json.JSONDecodeError, RecursionError) as exc:
            yield Record(line=number, error=f"not valid JSON: {_json_reason(exc)}", raw=stripped)
            continue
        if not isinstance(value, dict):
            yield Record(line=number, error="a JSON Lines row must be an object", raw=stripped)
            continue
        yield Record(line=number, fields=value, raw=stripped)


def _json_reason(exc: Exception) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"


def json_list_elements(text: io.TextIOWrapper) -> Iterator[tuple[int, Any, str]]:
    """Yield (line, value, raw) for each element of a top-level JSON list, reading in blocks.

    Raises ImportFileError where the list itself is broken, since the rest cannot be read reliably.
    """
    decoder = json.JSONDecoder()
    buffer = ""
    consumed_lines = 1
    eof = False

    def fill() -> bool:
        nonlocal buffer, eof
        block = text.read(CHECK_BLOCK)
        if not block:
            eof = True
            return False
        buffer += block
        return True

    fill()
    buffer = buffer.lstrip("\ufeff")
    position = _skip_ws(buffer, 0)
    while position >= len(buffer) and fill():
        position = _skip_ws(buffer, position)
    if position >= len(buffer) or buffer[position] != "[":
        raise ImportFileError(ERROR_NOT_LABELSTUDIO)
    position += 1
    expect_value = True
    first = True
    offset_base = 0
    while True:
        position = _skip_ws(buffer, position)
        while position >= len(buffer) and not eof:
            fill()
            position = _skip_ws(buffer, position)
        if position >= len(buffer):
            raise ImportFileError(
                ERROR_BAD_JSON_LIST.format(offset=offset_base + position, reason="the list is not closed")
            )
        char = buffer[position]
        if char == "]" and (first or not expect_value):
            return
        if not expect_value:
            if char != ",":
                raise ImportFileError(
                    ERROR_BAD_JSON_LIST.format(offset=offset_base + position, reason="expected ',' or ']'")
                )
            position += 1
            expect_value = True
            continue
        while True:
            try:
                value, end = decoder.raw_decode(buffer, position)
                break
            except (json.JSONDecodeError, RecursionError) as exc:
                if eof or len(buffer) - position > MAX_JSON_ELEMENT_CHARS:
                    raise ImportFileError(
                        ERROR_BAD_JSON_LIST.format(offset=offset_base + position, reason=_json_reason(exc))
                    ) from exc
                fill()
        line = consumed_lines + buffer.count("\n", 0, position)
        raw = buffer[position:end]
        yield line, value, raw
        consumed_lines = line + raw.count("\n")
        offset_base += end
        buffer = buffer[end:]
        position = 0
        expect_value = False
        first = False


def _skip_ws(buffer: str, position: int) -> int:
    length = len(buffer)
    while position < length and buffer[position] in " \t\r\n":
        position += 1
    return position


def labelstudio_records(text: io.TextIOWrapper) -> Iterator[Record]:
    """Yield one Record per task: its `data` fields plus the choices of its annotations as labels."""
    for line, task, raw in json_list_elements(text):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            yield Record(line=line, error='a Label Studio task must be an object with a "data" object', raw=raw[:2000])
            continue
        fields = dict(task["data"])
        if "id" in task and "labelstudio_id" not in fields:
            fields["labelstudio_id"] = task["id"]
        labels: list[tuple[str, str]] = []
        for annotation in task.get("annotations") or []:
            if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
                continue
            author = annotation.get("completed_by")
            if isinstance(author, dict):
                author = author.get("email") or author.get("id")
            labeler = f"labelstudio:{author}" if author not in (None, "") else "labelstudio"
            for result in annotation.get("result") or []:
                value = result.get("value") if isinstance(result, dict) else None
                choices = value.get("choices") if isinstance(value, dict) else None
                if isinstance(choices, list):
                    labels.extend((str(choice), labeler) for choice in choices if choice not in (None, ""))
        yield Record(line=line, fields=fields, raw=raw[:2000], labels=labels)
