"""The DuckDB connection under `DuckDBStore`: one connection on one worker thread, group commit, its memory figures."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import duckdb

from memory.duckdb_commit import GroupCommit
from memory.duckdb_errors import store_error
from memory.duckdb_rows import Row
from memory.migrations import apply_migrations
from memory.models import Changes
from memory.secretbox import SecretBox

T = TypeVar("T")


class DuckDBConnection:
    """DuckDB connections are not thread-safe, so the one connection lives on one worker thread and
    every query is handed to it; the event loop never blocks on the database.
    """

    secret_box: SecretBox | None  # set by the server before `open` (see Store.secret_box)

    def __init__(self, path: str, *, memory_limit: str | None = None) -> None:
        self.path = path
        self.memory_limit = memory_limit  # DuckDB's own default is 80% of RAM
        self._executor: ThreadPoolExecutor | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._group = GroupCommit()

    # --- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb")
        self._executor = executor
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._connect)
        except BaseException:
            self._executor = None
            executor.shutdown(wait=False)
            raise

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    def _connect(self) -> None:
        if not self.path.startswith(":memory:"):
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        con = duckdb.connect(self.path)
        try:
            # One worker thread per query: the server needs the other core, and our queries are small.
            con.execute("SET threads = 1")
            # Naive datetimes a caller passes are then read as UTC, never as the host's zone.
            con.execute("SET TimeZone = 'UTC'")
            # Rows written since the last checkpoint stay in memory until it; checkpoint every 4 MB of WAL (not 16).
            con.execute("SET checkpoint_threshold = '4MB'")
            if self.memory_limit:
                # The buffer pool keeps every block it has read or written until this limit; the rest is re-read.
                con.execute("SET memory_limit = ?", [self.memory_limit])
            apply_migrations(con)
        except BaseException:
            con.close()
            raise
        self._con = con

    def _disconnect(self) -> None:
        self._group.drain(self._con)
        con, self._con = self._con, None
        if con is not None:
            con.close()

    async def _run(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        executor = self._executor
        if executor is None:
            raise RuntimeError("DuckDBStore is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, self._on_worker, work)

    def _on_worker(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        if self._con is None:
            raise RuntimeError("DuckDBStore is closed")
        try:
            return work(self._con)
        except duckdb.Error as exc:
            error = store_error(exc)
            if error is exc:
                raise
            raise error from exc

    # --- writes -----------------------------------------------------------------------------
    async def commit(self, changes: Changes) -> None:
        if not changes:
            return
        executor = self._executor
        if executor is None:
            raise RuntimeError("DuckDBStore is not open")
        done = self._group.enqueue(changes)
        # Whichever drain runs first takes every queued commit; the later ones find nothing to do.
        executor.submit(self._drain_commits)
        # If the caller is cancelled here the write may still land; the worker skips the dead future.
        await done

    def _drain_commits(self) -> None:
        self._group.drain(self._con)

    @property
    def commit_transactions(self) -> int:
        """Transactions the group commit has run; fewer than `commit` calls means batching."""
        return self._group.transactions

    async def memory_figures(self) -> dict[str, float]:
        """MB in DuckDB's buffer pool and in its WAL file (for the memory report)."""
        def work(con: duckdb.DuckDBPyConnection) -> list[Row]:
            return con.execute("SELECT tag, memory_usage_bytes FROM duckdb_memory()").fetchall()

        tags = {tag: float(used) / 2**20 for tag, used in await self._run(work)}
        wal = self.path + ".wal"
        size = os.path.getsize(wal) if os.path.exists(wal) else 0
        return {"duckdb": sum(tags.values()), "duckdb_table": tags.get("BASE_TABLE", 0.0),
                "duckdb_index": tags.get("ART_INDEX", 0.0), "duckdb_wal": size / 2**20}


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> Any:
    """The single value a query returns; for INSERT, UPDATE and DELETE, the number of rows changed."""
    row = con.execute(sql, params).fetchone()
    assert row is not None
    return row[0]
