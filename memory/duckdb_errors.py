"""Turning DuckDB's exceptions into the `Store` interface's errors, so callers never catch duckdb types."""

from __future__ import annotations

import duckdb

from memory.store import Conflict


def store_error(exc: BaseException) -> BaseException:
    """The interface error for `exc`: a duplicate key or a write-write race becomes Conflict; else `exc`.

    Other constraint failures (NOT NULL, a bad type) are bugs in the caller and stay DuckDB's own.
    """
    text = str(exc)
    lowered = text.lower()
    # A key taken in this transaction fails the statement; one taken by a concurrent transaction fails the COMMIT.
    if isinstance(exc, (duckdb.ConstraintException, duckdb.TransactionException)) and "duplicate key" in lowered:
        return _conflict(text, exc)
    if isinstance(exc, duckdb.TransactionException) and "conflict" in lowered:
        return _conflict(text, exc)
    return exc


def _conflict(text: str, cause: BaseException) -> Conflict:
    conflict = Conflict(text)
    conflict.__cause__ = cause
    return conflict
