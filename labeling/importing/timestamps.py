"""Parse the source timestamps that real exports carry, or say that there is none."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_NUMERIC = re.compile(r"^[+-]?\d+(\.\d+)?$")
_TRAILING_ZONE = re.compile(r"\s*(UTC|GMT)$", re.IGNORECASE)
_MIN = datetime(1900, 1, 1, tzinfo=UTC)
_MAX = datetime(2200, 1, 1, tzinfo=UTC)


def _from_epoch(value: float) -> datetime | None:
    """Read seconds, or milliseconds or microseconds when the number is too large to be seconds."""
    if not math.isfinite(value):
        return None
    magnitude = abs(value)
    if magnitude >= 1e14:
        value /= 1e6
    elif magnitude >= 1e11:
        value /= 1e3
    try:
        moment = datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return moment if _MIN <= moment < _MAX else None


def parse_timestamp(value: object) -> datetime | None:
    """Return an aware UTC datetime for ISO 8601 (any precision, any offset) or epoch values, else None.

    Naive ISO times are taken as UTC. Digits alone are epoch seconds (milliseconds from 1e11,
    microseconds from 1e14). Anything else, including an empty value, gives None.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    # Cheap character checks first: an ISO time with a clock has a colon, a zone name ends in C or T.
    if ":" not in text and _NUMERIC.match(text):
        return _from_epoch(float(text))
    if text[-1] in "CTct":
        text = _TRAILING_ZONE.sub("+00:00", text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment if _MIN <= moment < _MAX else None
