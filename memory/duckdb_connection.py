"""The DuckDB connection under `DuckDBStore`: one connection on one worker thread, group commit, its memory figures."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import duckdb
import orjson

from memory import native_heap
from memory.duckdb_commit import GroupCommit, _PendingCommit
from memory.duckdb_errors import store_error
from memory.duckdb_journal import Journal, JournalRecord, RejectHandler
from memory.duckdb_rows import Row
from memory.migrations import apply_migrations
from memory.models import Changes
from memory.secretbox import SecretBox
from memory.store import StoreUnavailable

T = TypeVar("T")
log = logging.getLogger("memproxy")

# Journaled turns reach the tables this long after the first of a group, or once this many are queued. A group
# costs ~2.5 ms of CPU with one turn and 15-25 ms with a few hundred (two inserts, a commit), so at a few turns
# a second the wait decides what each pays for it. Reads apply the queue first: the wait hides nothing. After
# a second or two without a statement, DuckDB's first ones cost 2-4 ms of CPU each on this virtual machine
# (its code and data gone cold; back to back 0.15), so a group of one turn every two seconds cost 6-18 ms:
# ten seconds makes that one group for the turns of ten seconds.
APPLY_DELAY_S = 10.0
APPLY_AT = 512
# Past this many journaled turns the tables have not taken (they keep failing), turns are refused.
JOURNAL_BACKLOG_MAX = 20_000


class DuckDBConnection:
    """DuckDB connections are not thread-safe, so the one connection lives on one worker thread and
    every query is handed to it; the event loop never blocks on the database.
    """

    secret_box: SecretBox | None  # set by the server before `open` (see Store.secret_box)

    def __init__(self, path: str, *, memory_limit: str | None = None, journal: bool = True) -> None:
        self.path = path
        self.memory_limit = memory_limit  # DuckDB's own default is 80% of RAM
        self._executor: ThreadPoolExecutor | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._group = GroupCommit()
        self._group.on_rejected = self._rejected
        on_disk = not path.startswith(":memory:")
        self._journal = Journal(path + ".journal", lambda: self._group.applied_seq) if journal and on_disk else None
        self._journal_seq = 0
        self._apply_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Told (on the event loop) the agent id of a journaled turn the tables refused; see `_rejected`.
        self.on_rejected: RejectHandler | None = None

    # --- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._executor is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb",
                                      initializer=native_heap.thread_namer("duckdb"))
        self._executor = executor
        self._loop = asyncio.get_running_loop()
        try:
            await self._loop.run_in_executor(executor, self._connect)
        except BaseException:
            self._executor = None
            executor.shutdown(wait=False)
            raise

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        if self._apply_timer is not None:
            self._apply_timer.cancel()
            self._apply_timer = None
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
            if self._journal is not None:
                self._replay(con, self._journal)
        except BaseException:
            con.close()
            raise
        self._con = con

    def _replay(self, con: duckdb.DuckDBPyConnection, journal: Journal) -> None:
        """Apply the journal's records the tables do not have yet (a crash came first), then start it afresh."""
        row = con.execute("SELECT applied FROM journal_state").fetchone()
        applied = int(row[0]) if row else 0
        records = journal.read()
        todo = [record for record in records if record.seq > applied]
        for record in todo:
            self._group.requeue(_PendingCommit(blocks=[], messages=record.messages, runs=record.runs,
                                               evict_ids=record.evict_ids, insert_only=True, done=None,
                                               loop=None, seq=record.seq, append=True))
        self._group.drain(con)
        if self._group.journaled:
            raise StoreUnavailable(f"the turn journal {journal.path} could not be applied to the tables")
        if todo:
            log.info("turn journal: %d turns acknowledged before the last stop applied to the tables", len(todo))
        self._journal_seq = max([applied, self._group.applied_seq, *(record.seq for record in records)])
        self._group.applied_seq = journal.durable = self._journal_seq
        journal.open()

    def _disconnect(self) -> None:
        self._group.drain(self._con)
        if self._journal is not None:
            self._journal.close()
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
        # Journaled turns first: every read sees what was acknowledged, and every write lands after them.
        self._group.drain(self._con)
        try:
            return work(self._con)
        except duckdb.Error as exc:
            error = store_error(exc)
            if error is exc:
                raise
            raise error from exc

    # --- writes -----------------------------------------------------------------------------
    async def commit(self, changes: Changes) -> None:
        await self._commit(changes, append=False)

    async def _commit(self, changes: Changes, *, append: bool) -> None:
        if not changes:
            return
        executor = self._executor
        if executor is None:
            raise RuntimeError("DuckDBStore is not open")
        done = self._group.enqueue(changes, append=append)
        # Whichever drain runs first takes every queued commit; the later ones find nothing to do.
        executor.submit(self._drain_commits)
        # If the caller is cancelled here the write may still land; the worker skips the dead future.
        await done

    def _drain_commits(self) -> None:
        self._group.drain(self._con)

    async def append_turn(self, changes: Changes) -> None:
        """Write a turn's new rows: durable once its journal record is synced; the tables get it with a group."""
        if not changes:
            return
        journal = self._journal
        if journal is None or journal.broken is not None or changes.blocks or not changes.insert_only:
            await self._commit(changes, append=changes.insert_only)  # a rewrite would reshape its agent
            return
        executor = self._executor
        if executor is None:
            raise RuntimeError("DuckDBStore is not open")
        if self._group.journaled >= JOURNAL_BACKLOG_MAX:
            raise StoreUnavailable("the database has not taken the journaled turns; try again shortly")
        self._journal_seq += 1
        seq = self._journal_seq
        pending = self._group.enqueue_journaled(changes, seq)
        durable = journal.submit(JournalRecord(seq, pending.messages, pending.runs, pending.evict_ids))
        if self._group.journaled >= APPLY_AT:
            executor.submit(self._drain_commits)
        elif self._apply_timer is None:
            self._apply_timer = asyncio.get_running_loop().call_later(APPLY_DELAY_S, self._apply_later)
        try:
            await durable
        except StoreUnavailable:
            # Not durable, so not written: out of the queue unless a group already took it to the tables.
            self._group.withdraw(seq)
            raise

    def _apply_later(self) -> None:
        self._apply_timer = None
        executor = self._executor
        if executor is not None and self._group.journaled:
            executor.submit(self._drain_commits)
            # If the tables refused the group for now, it is back in the queue: try again after another delay.
            self._apply_timer = asyncio.get_running_loop().call_later(APPLY_DELAY_S, self._apply_later)

    def _rejected(self, pending: _PendingCommit, error: BaseException) -> None:
        """A journaled turn the tables refused (a bug, or a row written around the live cache): kept and told.

        Its rows go to `<database>.journal-rejected` (JSON lines, private like the database), and the
        agent's live copy is dropped so the next turn starts from what the tables hold.
        """
        agent_id = next((row[1] for row in pending.messages + pending.runs), "")
        log.error("a turn of %s was acknowledged but the tables refused it (%s); its rows are kept in %s",
                  agent_id, type(error).__name__, self.path + ".journal-rejected")
        try:
            fd = os.open(self.path + ".journal-rejected", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, orjson.dumps({"seq": pending.seq, "error": str(error), "messages": pending.messages,
                                           "runs": pending.runs, "evicted": pending.evict_ids}) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("could not keep the refused turn of %s: %s", agent_id, exc)
        handler, loop = self.on_rejected, self._loop
        if handler is not None and loop is not None and agent_id:
            try:
                loop.call_soon_threadsafe(handler, agent_id)
            except RuntimeError:
                pass  # the loop is closed

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
