"""Turn source records into clean rows: text, source time, labels and meta, or a reason to reject."""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from json.encoder import c_make_encoder, encode_basestring
from typing import Any, NamedTuple

from .timestamps import parse_timestamp

_TAG = re.compile(r"<[^>]{0,200}>")
_BREAK = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_META_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str, allow_nan=False)


def _c_meta_encoder() -> Any:
    """Build the C encoder behind json.dumps once, not per row; None where it is missing or has changed."""
    if c_make_encoder is None:
        return None
    try:
        return c_make_encoder(None, str, encode_basestring, None, ": ", ", ", False, False, False)
    except TypeError:
        return None


_META_ENCODE_ONE = _c_meta_encoder()
_LABEL_CACHE_SIZE = 10_000

ERROR_EMPTY_TEXT = "empty text"
ERROR_TEXT_TOO_LONG = "text is {length:,} characters, over the limit of {limit:,}"
ERROR_UNKNOWN_LABEL = "unknown label {label!r} (project labels: {known})"


@dataclass(frozen=True)
class FieldMap:
    text: str
    time: str | None
    label: str | None


class CleanRow(NamedTuple):
    """One row ready to write; a named tuple because large imports build millions of them."""

    line: int
    text: str
    content_hash: str
    observed_at: datetime | None
    time_given: bool
    meta_json: str
    labels: tuple[tuple[str, str], ...]


def clean_text(value: Any, *, unescape_html: bool) -> str:
    """Return the text without NULs, BOMs and zero-width spaces, NFC-normalized and stripped."""
    if value is None:
        return ""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False)
        if isinstance(value, dict | list)
        else str(value)
    )
    text = _without_invisible(_safe_str(text))
    if unescape_html:
        if "<" in text:
            text = _TAG.sub("", _BREAK.sub("\n", text))
        if "&" in text:
            text = _without_invisible(html.unescape(text))
    if not text.isascii():  # ASCII text is already NFC
        text = unicodedata.normalize("NFC", text)
    return text.strip()


def _without_invisible(text: str) -> str:
    # Three replace() calls cost far less than translate(), which is slow on non-ASCII text.
    return text.replace("\x00", "").replace("\ufeff", "").replace("\u200b", "")


def _safe_str(text: str) -> str:
    """Replace lone surrogates (possible from JSON escapes), which no database will store."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def json_safe(value: Any) -> Any:
    """Return the value with NULs and lone surrogates removed from every string, NaN and infinities as null."""
    if isinstance(value, str):
        return _safe_str(value).replace("\x00", "")
    if isinstance(value, dict):
        return {json_safe(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):  # NaN and infinities are not JSON
        return None
    return value


def meta_json(meta: dict[str, Any]) -> str:
    """Return meta as JSON that jsonb accepts: no NUL escapes, NaN, infinities or lone surrogates."""
    if not meta:
        return "{}"
    try:
        encoded = "".join(_META_ENCODE_ONE(meta, 0)) if _META_ENCODE_ONE else _META_ENCODER.encode(meta)
    except (TypeError, ValueError, RecursionError):
        encoded = ""
    # Clean meta (nearly all rows) encodes the same with or without json_safe; only the rest pay for it.
    if not encoded or "\\u0000" in encoded or not (encoded.isascii() or _safe_str(encoded) is encoded):
        return json.dumps(json_safe(meta), ensure_ascii=False, default=str, allow_nan=False)
    return encoded


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RowNormalizer:
    """Validate one record against the field map and the project's labels."""

    def __init__(
        self,
        *,
        fields: FieldMap,
        label_names: dict[str, str],
        label_map: dict[str, str],
        create_missing_labels: bool,
        unescape_html: bool,
        max_text_chars: int,
    ) -> None:
        self.fields = fields
        self.label_names = label_names
        self.label_folded = {name.casefold(): name for name in label_names}
        self.label_map = label_map
        self.create_missing_labels = create_missing_labels
        self.unescape_html = unescape_html
        self.max_text_chars = max_text_chars
        self.new_labels: list[str] = []
        self._used = frozenset((fields.text, fields.time, fields.label))
        self._resolved: dict[str, str | None] = {}

    def resolve_label(self, raw: Any) -> str | None:
        """Return the project label name for a raw value, None for no label; raise ValueError if unknown."""
        if raw is None:
            return None
        if not isinstance(raw, str):
            return self._resolve(raw)
        # A label column repeats a handful of values: resolve each once.
        if raw in self._resolved:
            return self._resolved[raw]
        name = self._resolve(raw)
        if len(self._resolved) < _LABEL_CACHE_SIZE:
            self._resolved[raw] = name
        return name

    def _resolve(self, raw: Any) -> str | None:
        value = clean_text(raw, unescape_html=False)
        if not value:
            return None
        value = self.label_map.get(value, value)
        if value in self.label_names:
            return value
        folded = self.label_folded.get(value.casefold())
        if folded is not None:
            return folded
        if self.create_missing_labels and len(value) <= 100:
            self.label_names[value] = value
            self.label_folded[value.casefold()] = value
            self.new_labels.append(value)
            return value
        known = ", ".join(sorted(self.label_names)) or "none yet"
        raise ValueError(ERROR_UNKNOWN_LABEL.format(label=value[:100], known=known))

    def normalize(self, line: int, fields: dict[str, Any], extra_labels: list[tuple[str, str]]) -> CleanRow:
        """Return a CleanRow or raise ValueError with the reason the row is rejected."""
        text = clean_text(fields.get(self.fields.text), unescape_html=self.unescape_html)
        if not text:
            raise ValueError(ERROR_EMPTY_TEXT)
        if len(text) > self.max_text_chars:
            raise ValueError(ERROR_TEXT_TOO_LONG.format(length=len(text), limit=self.max_text_chars))
        raw_time = fields.get(self.fields.time) if self.fields.time else None
        observed_at = parse_timestamp(raw_time)
        time_given = observed_at is not None or (
            raw_time not in (None, "") and not (isinstance(raw_time, str) and not raw_time.strip())
        )
        labels: tuple[tuple[str, str], ...] = ()
        if self.fields.label:
            name = self.resolve_label(fields.get(self.fields.label))
            if name is not None:
                labels = ((name, "import"),)
        if extra_labels:
            found = list(labels)
            for raw_label, labeler in extra_labels:
                name = self.resolve_label(raw_label)
                if name is not None:
                    found.append((name, labeler))
            labels = tuple(dict.fromkeys(found))
        used = self._used
        return CleanRow(
            line,
            text,
            content_hash(text),
            observed_at,
            time_given,
            meta_json({key: value for key, value in fields.items() if key not in used}),
            labels,
        )
