from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from memory.longterm.timefilter import parse_range

UTC = timezone.utc


def test_unbounded() -> None:
    assert parse_range(None, None) == (None, None)
    assert parse_range("", "  ") == (None, None)


def test_date_only_covers_the_whole_day() -> None:
    start, end = parse_range("2025-09-29", "2025-09-30")
    assert start == datetime(2025, 9, 29, 0, 0, tzinfo=UTC)
    assert end == datetime(2025, 9, 30, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_range(date(2025, 9, 29), date(2025, 9, 29)) == (
        datetime(2025, 9, 29, tzinfo=UTC),
        datetime(2025, 9, 29, 23, 59, 59, 999999, tzinfo=UTC),
    )


def test_date_only_in_a_time_zone() -> None:
    start, end = parse_range("2025-01-15", "2025-01-15", tz="America/New_York")
    assert start == datetime(2025, 1, 15, 5, 0, tzinfo=UTC)  # EST is UTC-5
    assert end == datetime(2025, 1, 16, 4, 59, 59, 999999, tzinfo=UTC)


def test_naive_datetimes_are_read_in_tz() -> None:
    start, _ = parse_range(datetime(2025, 7, 1, 9, 0), None, tz="Europe/Paris")
    assert start == datetime(2025, 7, 1, 7, 0, tzinfo=UTC)  # CEST is UTC+2
    start, _ = parse_range("2025-07-01T09:00:00", None, tz="Europe/Paris")
    assert start == datetime(2025, 7, 1, 7, 0, tzinfo=UTC)


def test_aware_values_keep_their_offset() -> None:
    start, end = parse_range("2025-07-01T09:00:00+02:00", "2025-07-01T10:00:00Z", tz="Asia/Tokyo")
    assert start == datetime(2025, 7, 1, 7, 0, tzinfo=UTC)
    assert end == datetime(2025, 7, 1, 10, 0, 0, 999999, tzinfo=UTC)


def test_end_precision_is_inclusive() -> None:
    _, end = parse_range(None, "2025-09-30T23:59:59")
    assert end == datetime(2025, 9, 30, 23, 59, 59, 999999, tzinfo=UTC)
    _, end = parse_range(None, "2025-09-30T23:59")
    assert end == datetime(2025, 9, 30, 23, 59, 59, 999999, tzinfo=UTC)
    _, end = parse_range(None, "2025-09-30T23:59:59.250")
    assert end == datetime(2025, 9, 30, 23, 59, 59, 250000, tzinfo=UTC)
    # A datetime object is exact: no widening.
    _, end = parse_range(None, datetime(2025, 9, 30, 12, 0, tzinfo=UTC))
    assert end == datetime(2025, 9, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "tz"),
    [("yesterday", None, "UTC"), (None, "2025-13-01", "UTC"), ("2025-02-02", "2025-02-01", "UTC"),
     (None, None, "Mars/Olympus"), (12345, None, "UTC")],
)
def test_bad_input_raises_value_error(start: object, end: object, tz: str) -> None:
    with pytest.raises(ValueError):
        parse_range(start, end, tz)  # type: ignore[arg-type]
