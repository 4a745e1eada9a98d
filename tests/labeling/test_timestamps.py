"""Source timestamps as real exports write them, and values that are not timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labeling.importing.timestamps import parse_timestamp


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2013-11-07T06:20:48", datetime(2013, 11, 7, 6, 20, 48, tzinfo=UTC)),
        ("2014-01-19T00:36:25.968000", datetime(2014, 1, 19, 0, 36, 25, 968000, tzinfo=UTC)),
        ("2015-05-22T14:30:11.1", datetime(2015, 5, 22, 14, 30, 11, 100000, tzinfo=UTC)),
        ("2015-02-24 11:35:52 -0800", datetime(2015, 2, 24, 19, 35, 52, tzinfo=UTC)),
        ("2015-02-24T11:35:52+05:30", datetime(2015, 2, 24, 6, 5, 52, tzinfo=UTC)),
        ("2015-02-24T11:35:52Z", datetime(2015, 2, 24, 11, 35, 52, tzinfo=UTC)),
        ("2015-02-24 11:35:52 UTC", datetime(2015, 2, 24, 11, 35, 52, tzinfo=UTC)),
        ("2015-02-24", datetime(2015, 2, 24, tzinfo=UTC)),
        ("1424800000", datetime(2015, 2, 24, 17, 46, 40, tzinfo=UTC)),
        ("1424800000.5", datetime(2015, 2, 24, 17, 46, 40, 500000, tzinfo=UTC)),
        ("1424800000000", datetime(2015, 2, 24, 17, 46, 40, tzinfo=UTC)),
        (1424800000, datetime(2015, 2, 24, 17, 46, 40, tzinfo=UTC)),
        (1424800000.25, datetime(2015, 2, 24, 17, 46, 40, 250000, tzinfo=UTC)),
        ("  2013-11-07T06:20:48  ", datetime(2013, 11, 7, 6, 20, 48, tzinfo=UTC)),
    ],
)
def test_real_world_formats_parse_to_utc(raw, expected):
    assert parse_timestamp(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "yesterday",
        "2015-13-45",
        "24/02/2015",
        "nan",
        float("nan"),
        float("inf"),
        True,
        [],
        {},
        "1e400",
    ],
)
def test_unusable_values_give_none(raw):
    assert parse_timestamp(raw) is None


def test_results_are_always_aware_utc():
    moment = parse_timestamp("2015-02-24 11:35:52 -0800")
    assert moment.tzinfo is not None and moment.utcoffset().total_seconds() == 0


def test_years_out_of_range_are_unusable():
    assert parse_timestamp("1850-01-01") is None
    assert parse_timestamp("2300-01-01") is None
