"""Inclusive date/datetime range parsing for search filters (shared by the search tools and the API).

Rules:
- `None` or a blank string means unbounded.
- A `date`, or a date-only string `YYYY-MM-DD`, covers the whole day: as a start it means 00:00,
  as an end it means the last microsecond of that day.
- A string end with minute or second precision covers that whole minute or second, so
  `end="2025-09-30T23:59:59"` includes 23:59:59.5.
- Naive datetimes (and strings without an offset) are read in `tz`; the result is always UTC.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The time part of an ISO string: HH:MM, then optional :SS, then optional fraction.
_TIME_PART = re.compile(r"[T ]\d{2}:\d{2}(?P<seconds>:\d{2}(?P<fraction>[.,]\d+)?)?")

TimeBound = str | date | datetime | None


def parse_range(start: TimeBound, end: TimeBound, tz: str = "UTC") -> tuple[datetime | None, datetime | None]:
    """Return the inclusive (start, end) bounds as aware UTC datetimes; ValueError on bad input."""
    zone = _zone(tz)
    lower = _parse_bound(start, zone, is_end=False)
    upper = _parse_bound(end, zone, is_end=True)
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"start ({lower.isoformat()}) is after end ({upper.isoformat()})")
    return lower, upper


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone: {tz!r}") from exc


def _parse_bound(value: TimeBound, zone: ZoneInfo, *, is_end: bool) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _to_utc(value, zone)
    if isinstance(value, date):
        return _day_bound(value, zone, is_end)
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 date or datetime, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    if _DATE_ONLY.match(text):
        return _day_bound(_parse_date(text), zone, is_end)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 date or datetime: {value!r}") from exc
    result = _to_utc(parsed, zone)
    if is_end:
        result += _precision_slack(text)
    return result


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not a valid date: {text!r}") from exc


def _day_bound(day: date, zone: ZoneInfo, is_end: bool) -> datetime:
    local = datetime.combine(day, time.max if is_end else time.min, tzinfo=zone)
    return local.astimezone(timezone.utc)


def _to_utc(value: datetime, zone: ZoneInfo) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(timezone.utc)


def _precision_slack(text: str) -> timedelta:
    """How far an end bound written at minute/second precision extends to stay inclusive."""
    match = _TIME_PART.search(text)
    if match is None or match.group("fraction"):
        return timedelta(0)
    if match.group("seconds") is None:
        return timedelta(minutes=1) - timedelta(microseconds=1)
    return timedelta(seconds=1) - timedelta(microseconds=1)
