"""SQL for PostgresStore built from the shared column lists, and asyncpg's errors as `Store` errors.

The row <-> record mapping is the DuckDB store's (memory.duckdb_rows): both keep JSON as text and
timestamps as instants, so a row means the same thing in either database.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Any, AsyncIterator

import asyncpg

from memory.duckdb_rows import Table
from memory.store import Conflict, StoreUnavailable

_PG_TYPES = {"VARCHAR": "text", "BIGINT": "int8", "INTEGER": "int4", "BOOLEAN": "bool", "TIMESTAMPTZ": "timestamptz"}


def _quote(name: str) -> str:
    return f'"{name}"'


@lru_cache(maxsize=None)
def select_list(table: Table) -> str:
    return ", ".join(_quote(name) for name, _ in table.columns)


@lru_cache(maxsize=None)
def insert_sql(table: Table) -> str:
    """Insert one row given as $1..$n in column order."""
    names = select_list(table)
    params = ", ".join(f"${i}" for i in range(1, len(table.columns) + 1))
    return f"INSERT INTO {table.name} ({names}) VALUES ({params})"


@lru_cache(maxsize=None)
def bulk_insert_sql(table: Table, upsert: bool, start: int = 1, where: str = "") -> str:
    """Insert many rows in one round trip, one array parameter per column from `$start` on; `upsert` overwrites
    rows by id; `where` (a condition) inserts none of them unless it holds."""
    names = select_list(table)
    arrays = ", ".join(f"${i}::{_PG_TYPES[t]}[]" for i, (_, t) in enumerate(table.columns, start=start))
    sql = f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays})"
    if where:
        sql += f" WHERE {where}"
    if upsert:
        sets = ", ".join(f"{_quote(n)} = EXCLUDED.{_quote(n)}" for n, _ in table.columns if n != "id")
        sql += f" ON CONFLICT (id) DO UPDATE SET {sets}"
    return sql


@lru_cache(maxsize=None)
def update_by_id_sql(table: Table) -> str:
    """Overwrite every column but `id`; parameters in column order, the id first."""
    sets = ", ".join(f"{_quote(n)} = ${i}" for i, (n, _) in enumerate(table.columns, start=1) if n != "id")
    return f"UPDATE {table.name} SET {sets} WHERE id = $1"


NUL_STAND_IN = "\ufffd"


def text_safe(value: Any) -> Any:
    """`value` with NUL characters replaced by U+FFFD: PostgreSQL text cannot hold NUL, and a write must not fail."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_STAND_IN) if "\x00" in value else value
    if isinstance(value, list):
        return [text_safe(v) for v in value]
    return value


def row_safe(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(text_safe(v) for v in row)


# Seconds a new pooled connection may take (asyncpg's default is 60): a database host that went away without a
# reset (no answer at all) fails a call within this instead of holding it for a minute.
CONNECT_TIMEOUT = 5.0

# A duplicate key, or a lost race with another writer (which PostgreSQL may report as either of the others).
_CONFLICTS = (asyncpg.UniqueViolationError, asyncpg.SerializationError, asyncpg.DeadlockDetectedError)


# The server is gone, going, starting or full, or the connection to it broke (a time-out is an OSError).
_GONE = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
         asyncpg.CrashShutdownError, asyncpg.TooManyConnectionsError)


def unavailable_error(exc: BaseException) -> StoreUnavailable | None:
    """StoreUnavailable for a failure of the database itself (not of the statement), else None."""
    if not isinstance(exc, _GONE):
        return None
    gone = StoreUnavailable(f"the PostgreSQL database did not answer ({type(exc).__name__})")
    gone.__cause__ = exc
    return gone


class ReportingPool:
    """An asyncpg pool whose calls raise StoreUnavailable when the database does not answer (long-term
    memory's pool: its callers, such as the archival routes, then answer 503 like the store's)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._pool, method)(*args)
        except Exception as exc:  # noqa: BLE001 - re-raised as it was unless the database is gone
            gone = unavailable_error(exc)
            if gone is None:
                raise
            raise gone from exc

    async def fetch(self, *args: Any) -> Any:
        return await self._call("fetch", *args)

    async def fetchrow(self, *args: Any) -> Any:
        return await self._call("fetchrow", *args)

    async def fetchval(self, *args: Any) -> Any:
        return await self._call("fetchval", *args)

    async def execute(self, *args: Any) -> Any:
        return await self._call("execute", *args)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        try:
            async with self._pool.acquire() as con:
                yield con
        except Exception as exc:  # noqa: BLE001 - as in _call
            gone = unavailable_error(exc)
            if gone is None:
                raise
            raise gone from exc


def store_error(exc: BaseException) -> BaseException:
    """The interface error for `exc`: Conflict for a taken key or a lost race, StoreUnavailable when the
    database did not answer; anything else unchanged."""
    if isinstance(exc, _CONFLICTS):
        conflict = Conflict(str(exc))
        conflict.__cause__ = exc
        return conflict
    return unavailable_error(exc) or exc


async def keep_session(con: asyncpg.Connection) -> None:
    """The pools' `reset`: give a connection back without asyncpg's default reset query.

    That query (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) is one more round trip and
    one more PostgreSQL transaction per pool checkout: 1 of every 2 commits of a turn, measured. memproxy's
    pooled sessions hold nothing it would clear: no cursor, LISTEN or session SET (only SET LOCAL), and the
    one session advisory lock (migrations) is unlocked in a `finally`. asyncpg still rolls back an open
    transaction on release whatever the reset does.
    """
    return None
