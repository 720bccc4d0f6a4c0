"""Building LanceDB `where` filters safely.

Every value that reaches a filter string goes through `quote` (SQL string literal, quotes doubled)
or `timestamp` (formatted from a datetime, never from caller text); ids are also validated against
the `<kind>-<uuid4>` shape first, so an agent scope can never be widened by a crafted id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone

ID_PATTERN = re.compile(r"^[a-z]+-[0-9a-f-]{36}$")
ROLE_PATTERN = re.compile(r"^[a-z_]{1,32}$")


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it looks like `<kind>-<uuid4>`, else raise ValueError."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def quote(value: str) -> str:
    """A SQL string literal: single quotes doubled, NUL dropped (the parser stops at it)."""
    return "'" + value.replace("\x00", "").replace("'", "''") + "'"


def timestamp(value: datetime) -> str:
    """A timestamp literal comparable with the `timestamp(us, UTC)` columns (naive = UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return f"CAST('{value.strftime('%Y-%m-%d %H:%M:%S.%f')}' AS TIMESTAMP)"


def agent_scope(agent_id: str) -> str:
    return f"agent_id = {quote(check_id(agent_id, 'agent_id'))}"


def id_in(ids: Iterable[str]) -> str:
    return "id IN (" + ", ".join(quote(check_id(i)) for i in ids) + ")"


def tags_filter(tags: list[str] | None, mode: str) -> str | None:
    if not tags:
        return None
    if mode not in ("any", "all"):
        raise ValueError(f"tag_match_mode must be 'any' or 'all', not {mode!r}")
    joiner = " OR " if mode == "any" else " AND "
    return "(" + joiner.join(f"array_has(tags, {quote(str(tag))})" for tag in tags) + ")"


def roles_filter(roles: list[str] | None) -> str | None:
    if not roles:
        return None
    for role in roles:
        if not isinstance(role, str) or not ROLE_PATTERN.match(role):
            raise ValueError(f"invalid role: {role!r}")
    return "role IN (" + ", ".join(quote(role) for role in roles) + ")"


def time_filter(start: datetime | None, end: datetime | None) -> str | None:
    parts = []
    if start is not None:
        parts.append(f"created_at >= {timestamp(start)}")
    if end is not None:
        parts.append(f"created_at <= {timestamp(end)}")
    return " AND ".join(parts) or None


def contains_text(needle: str) -> str:
    """Case-insensitive substring match on `text` (no LIKE, so `%` and `_` are literal)."""
    return f"strpos(lower(text), {quote(needle.lower())}) > 0"


def after_row(created_at: datetime, row_id: str) -> str:
    """Rows later than the given one in (created_at, id) order."""
    ts = timestamp(created_at)
    return f"created_at > {ts} OR (created_at = {ts} AND id > {quote(row_id)})"


def before_row(created_at: datetime, row_id: str) -> str:
    """Rows earlier than the given one in (created_at, id) order."""
    ts = timestamp(created_at)
    return f"created_at < {ts} OR (created_at = {ts} AND id < {quote(row_id)})"


def all_of(*clauses: str | None) -> str:
    return " AND ".join(f"({c})" for c in clauses if c)
