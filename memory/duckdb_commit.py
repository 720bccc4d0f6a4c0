"""Group commit for DuckDBStore: concurrent `Changes` share one transaction, and one bad write fails alone.

Journaled turns (see duckdb_journal.py) wait here too, already acknowledged: they reach the tables with the
next group, which moves `journal_state.applied` in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from memory.duckdb_errors import store_error
from memory.duckdb_rows import (
    BLOCKS,
    ID_IN_LIST,
    MESSAGES,
    RUNS,
    Row,
    Table,
    arrow_rows,
    as_columns,
    block_row,
    message_row,
    run_row,
)
from memory.models import Changes
from memory.store import Conflict

log = logging.getLogger("memproxy")
_IN_CONTEXT = [name for name, _ in MESSAGES.columns].index("in_context")
_AGENT_ID = [name for name, _ in MESSAGES.columns].index("agent_id")
# Up to this many rows a VALUES list inserts faster than unnesting one list per column (measured).
_VALUES_MAX_ROWS = 4


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Commit on success, roll back on any exception."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # a failed COMMIT has already ended the transaction
        raise


@dataclass
class _PendingCommit:
    """One caller's `Changes`, already turned into rows, waiting for the next group transaction."""

    blocks: list[Row]
    messages: list[Row]
    runs: list[Row]
    evict_ids: list[str]
    insert_only: bool
    done: asyncio.Future[None] | None  # None: a journaled turn, acknowledged by the journal
    loop: asyncio.AbstractEventLoop | None  # None: a journal record read back at start
    seq: int = 0  # a journaled turn's record
    append: bool = False  # a turn's new rows (Store.append_turn), journaled or not


def _pending(changes: Changes, done: asyncio.Future[None] | None, seq: int, append: bool) -> _PendingCommit:
    # Rows are taken now, on the caller's side: the records may be mutated before the worker gets to them.
    return _PendingCommit(
        blocks=[block_row(block) for block in changes.blocks],
        messages=[message_row(message, message.in_context) for message in changes.messages],
        runs=[run_row(run) for run in changes.runs],
        evict_ids=list(changes.evict_message_ids),
        insert_only=changes.insert_only,
        done=done,
        loop=asyncio.get_running_loop(),
        seq=seq,
        append=append,
    )


# A journaled turn that fails with one of these can never be written; anything else (I/O, memory) may pass later.
_DATA_ERRORS = (duckdb.ConstraintException, duckdb.ConversionException, duckdb.InvalidInputException, Conflict)


class GroupCommit:
    """A queue of commits filled on the event loop and drained, all at once, on the database thread."""

    def __init__(self) -> None:
        # Transactions committed so far; fewer than the number of commits means batching happened.
        self.transactions = 0
        self.journaled = 0  # journaled turns queued, not yet in the tables
        self.applied_seq = 0  # highest journal record in the tables (or rejected by them)
        # Called on the database thread: a journaled turn the tables refused.
        self.on_rejected: Callable[[_PendingCommit, BaseException], None] | None = None
        self._pending: list[_PendingCommit] = []
        self._lock = threading.Lock()

    def enqueue(self, changes: Changes, *, append: bool = False) -> asyncio.Future[None]:
        """Queue `changes` (on the event loop); the future resolves once they are durable or have failed.

        `append`: a turn's new rows (Store.append_turn), which do not reshape its agent."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._add(_pending(changes, done, 0, append))
        return done

    def enqueue_journaled(self, changes: Changes, seq: int) -> _PendingCommit:
        """Queue a turn whose journal record `seq` the journal answers for: no future, it lands with the next group.

        The rows it returns are the ones that record holds.
        """
        pending = _pending(changes, None, seq, True)
        self._add(pending)
        return pending

    def _add(self, pending: _PendingCommit) -> None:
        with self._lock:
            self._pending.append(pending)
            self.journaled += bool(pending.seq)

    def withdraw(self, seq: int) -> bool:
        """Drop a journaled turn still queued (its record could not be written); False if it already landed."""
        with self._lock:
            for i, pending in enumerate(self._pending):
                if pending.seq == seq:
                    del self._pending[i]
                    self.journaled -= 1
                    return True
        return False

    def requeue(self, pending: _PendingCommit) -> None:
        """Queue a journal record read back at start (its rows as they were written)."""
        self._add(pending)

    def drain(self, con: duckdb.DuckDBPyConnection | None) -> None:
        """Apply everything queued so far in one transaction (on the database thread), then wake each caller."""
        with self._lock:
            batch, self._pending = self._pending, []
            self.journaled = 0
        if not batch:
            return
        outcomes: list[BaseException | None]
        if con is None:
            outcomes = [RuntimeError("DuckDBStore is closed") for _ in batch]
        else:
            outcomes = self._apply(con, batch)
        _settle(batch, outcomes)

    def _apply(self, con: duckdb.DuckDBPyConnection, batch: list[_PendingCommit]) -> list[BaseException | None]:
        try:
            with transaction(con):
                _write(con, batch)
            self.transactions += 1
            self._applied(batch)
            return [None] * len(batch)
        except Exception as exc:  # noqa: BLE001 - retried one by one below, or reported as is
            if len(batch) == 1 and not batch[0].seq:
                return [store_error(exc)]
        # One bad Changes must not fail the others, so each gets its own transaction.
        outcomes: list[BaseException | None] = []
        for i, pending in enumerate(batch):
            try:
                with transaction(con):
                    _write(con, [pending])
                self.transactions += 1
                self._applied([pending])
                outcomes.append(None)
            except Exception as exc:  # noqa: BLE001 - handed to that caller
                error = store_error(exc)
                if pending.seq and not isinstance(error, _DATA_ERRORS):
                    # The tables cannot take writes now; journaled turns wait (in order) for the next try.
                    self._hold_back(batch[i:], error)
                    return outcomes + [error] * (len(batch) - i)
                if pending.seq:
                    self._reject(con, pending, error)
                outcomes.append(error)
        return outcomes

    def _applied(self, batch: list[_PendingCommit]) -> None:
        seq = max((pending.seq for pending in batch), default=0)
        if seq:
            self.applied_seq = seq

    def _reject(self, con: duckdb.DuckDBPyConnection, pending: _PendingCommit, error: BaseException) -> None:
        """A journaled turn the tables refuse: reported, and passed over so a restart does not try it again."""
        if self.on_rejected is not None:
            self.on_rejected(pending, error)
        try:
            with transaction(con):
                mark_applied(con, pending.seq)
            self._applied([pending])
        except duckdb.Error:
            pass  # then it is tried (and reported) again at the next start

    def _hold_back(self, rest: list[_PendingCommit], error: BaseException) -> None:
        """Put the journaled turns back at the head of the queue; they stay durable in the journal meanwhile."""
        journaled = [pending for pending in rest if pending.seq]
        with self._lock:
            self._pending[:0] = journaled
            self.journaled += len(journaled)
        log.warning("%d journaled turns could not reach the tables yet (%s); tried again with the next group",
                    len(journaled), type(error).__name__)


def _write(con: duckdb.DuckDBPyConnection, batch: list[_PendingCommit]) -> None:
    """Apply the batch as if each `Changes` ran in order, with two statements per table at most.

    Rows are merged by id (later wins) so each key is written once. Evictions run before the
    upserts; an eviction that follows an upsert of the same message in the batch is folded into
    that row instead.
    """
    blocks: dict[str, Row] = {}
    messages: dict[str, Row] = {}
    runs: dict[str, Row] = {}
    new_messages: dict[str, Row] = {}
    new_runs: dict[str, Row] = {}
    evict_ids: list[str] = []
    reshaped: set[str] = set()  # agents whose messages a commit other than a turn's append writes
    for pending in batch:
        if not pending.append:
            reshaped.update(row[_AGENT_ID] for row in pending.messages)
        blocks.update((row[0], row) for row in pending.blocks)
        into_messages, into_runs = (new_messages, new_runs) if pending.insert_only else (messages, runs)
        into_messages.update((row[0], row) for row in pending.messages)
        into_runs.update((row[0], row) for row in pending.runs)
        for message_id in pending.evict_ids:
            evict_ids.append(message_id)
            for rows in (messages, new_messages):
                row = rows.get(message_id)
                if row is not None and row[_IN_CONTEXT]:
                    rows[message_id] = (*row[:_IN_CONTEXT], False, *row[_IN_CONTEXT + 1 :])
    if evict_ids:
        con.execute(f"UPDATE messages SET in_context = false WHERE {ID_IN_LIST}", [evict_ids])
    for table, rows in ((BLOCKS, blocks), (MESSAGES, messages), (RUNS, runs)):
        if rows:
            _replace_rows(con, table, list(rows.values()))
    for table, rows in ((MESSAGES, new_messages), (RUNS, new_runs)):
        if rows:
            insert_rows(con, table, list(rows.values()))
    if reshaped or evict_ids:
        # Not only appended to: a copy of the history up to its last seq may no longer be the history.
        con.execute(f"UPDATE agents SET reshapes = reshapes + 1 WHERE {ID_IN_LIST}"
                    f" OR id IN (SELECT agent_id FROM messages WHERE {ID_IN_LIST})", [sorted(reshaped), evict_ids])
    seq = max((pending.seq for pending in batch), default=0)
    if seq:
        mark_applied(con, seq)


def mark_applied(con: duckdb.DuckDBPyConnection, seq: int) -> None:
    """Record (inside the caller's transaction) that the turn journal's records up to `seq` are done with."""
    con.execute("UPDATE journal_state SET applied = ?", [seq])


def _replace_rows(con: duckdb.DuckDBPyConnection, table: Table, rows: list[Row]) -> None:
    """Upsert by id as delete + insert, both by index.

    DuckDB runs ON CONFLICT DO UPDATE as a MERGE whose hash join scans the whole table (80 ms at
    a million messages); this costs the same at any table size.
    """
    con.execute(f"DELETE FROM {table.name} WHERE {ID_IN_LIST}", [[row[0] for row in rows]])
    insert_rows(con, table, rows)


def insert_rows(con: duckdb.DuckDBPyConnection, table: Table, rows: list[Row]) -> None:
    """Insert `rows` (new ids) into `table` in one statement, inside the caller's transaction."""
    if len(rows) <= _VALUES_MAX_ROWS:
        con.execute(table.insert_values_sql(len(rows)), [value for row in rows for value in row])
        return
    columns = as_columns(rows)
    try:
        memproxy_rows = arrow_rows(table, columns)  # read by DuckDB below, by its name (a replacement scan)
    except pa.ArrowException:
        # A value of the wrong type: bound as parameters, DuckDB casts it or raises its own (data) error.
        con.execute(table.bulk_insert_sql, columns)
        return
    # As Arrow arrays (converted in C) rather than one list parameter per column (each value bound on its own):
    # a 2 s group of 1,200 turns (2,400 messages, 1,200 runs) inserts in ~16 ms instead of ~28.
    con.execute(table.insert_from_sql("memproxy_rows"))


def _settle(batch: list[_PendingCommit], outcomes: list[BaseException | None]) -> None:
    """Resolve each caller's future (journaled turns have none: the journal answered them)."""
    resolve_on_loops((pending.loop, pending.done, outcome) for pending, outcome in zip(batch, outcomes)
                     if pending.done is not None and pending.loop is not None)


Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Future[None], BaseException | None]


def resolve_on_loops(waiters: Iterable[Waiter]) -> None:
    """From a worker thread: settle each future (None: done, else its error) on its own loop, one wake-up a loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]] = {}
    for loop, done, outcome in waiters:
        by_loop.setdefault(loop, []).append((done, outcome))
    for loop, results in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, results)
        except RuntimeError:
            pass  # the loop is closed: nobody is left waiting


def _resolve(results: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for done, outcome in results:
        if done.done():  # the caller was cancelled
            continue
        if outcome is None:
            done.set_result(None)
        else:
            done.set_exception(outcome)
