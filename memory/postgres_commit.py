"""Group commit for PostgresStore: concurrent `Changes` share one transaction, and one bad write fails alone.

Each `Changes` is one statement (its fence, eviction, blocks, messages, runs, recall rows and reshape count).
Alone, it is its own transaction; in a batch, the batch's statements go pipelined in one transaction. If one
of them breaks a rule (a taken seq, a duplicate id), that transaction rolls back whole and each statement goes
again in a savepoint of its own, in arrival order: the bad one fails alone and the rest commit together. Only a
failure of the connection fails the whole batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import asyncpg

from memory.duckdb_rows import BLOCKS, MESSAGES, RUNS, Row, as_columns, block_row, message_row, run_row
from memory.models import Changes
from memory.postgres_sql import bulk_insert_sql, row_safe, store_error
from memory.recall import recall_record
from memory.store import FenceLost, NotFound

_IN_CONTEXT = [name for name, _ in MESSAGES.columns].index("in_context")


@lru_cache(maxsize=None)
def _recall_upsert(start: int = 1, where: str = "") -> str:
    # A row may exist already (a message written again, or indexed by start-up reconciliation): overwrite
    # its text and leave its embedding to long-term memory, which re-embeds rows it is told about.
    a, b, c, d, e = range(start, start + 5)
    return ("INSERT INTO recall (id, agent_id, role, text, created_at)"
            f" SELECT * FROM unnest(${a}::text[], ${b}::text[], ${c}::text[], ${d}::text[], ${e}::timestamptz[])"
            + (f" WHERE {where}" if where else "") +
            " ON CONFLICT (id) DO UPDATE SET agent_id = EXCLUDED.agent_id, role = EXCLUDED.role,"
            " text = EXCLUDED.text, created_at = EXCLUDED.created_at")


@dataclass
class _PendingCommit:
    """One caller's `Changes`, already turned into rows (the caller may mutate its records afterwards)."""

    blocks: list[Row]
    messages: list[Row]
    runs: list[Row]
    recall: list[Row]  # (id, agent_id, role, text, created_at) of the messages worth finding
    evict_ids: list[str]
    reshaped: list[str]  # agents whose messages this writes other than as a turn's append (evictions aside)
    insert_only: bool
    fence: tuple[str, int] | None
    done: asyncio.Future[None]


def _pending(changes: Changes, recall_skip: frozenset[str] | None, append: bool) -> _PendingCommit:
    evicted = set(changes.evict_message_ids)
    # A message both written and evicted by one Changes ends out of context, as in the DuckDB store.
    messages = [row_safe(message_row(m, m.in_context and m.id not in evicted)) for m in changes.messages]
    return _PendingCommit(
        blocks=[row_safe(block_row(block)) for block in changes.blocks],
        messages=messages,
        runs=[row_safe(run_row(run)) for run in changes.runs],
        recall=[] if recall_skip is None else _recall_rows(changes, recall_skip),
        evict_ids=list(changes.evict_message_ids),
        # A turn's append reshapes nothing, except by messages it writes and evicts at once.
        reshaped=sorted({m.agent_id for m in changes.messages if not append or m.id in evicted}),
        insert_only=changes.insert_only,
        fence=changes.fence,
        done=asyncio.get_running_loop().create_future(),
    )


def _recall_rows(changes: Changes, skip: frozenset[str]) -> list[Row]:
    records = (recall_record(message, skip) for message in changes.messages)
    # The last version of a message wins, as in the messages table.
    rows = {r.id: (r.id, r.agent_id, r.role, r.text, r.created_at) for r in records if r is not None}
    return [row_safe(row) for row in rows.values()]


class PgGroupCommit:
    """Queued commits, written by one drain task at a time on one pooled connection.

    With `recall_skip` set, each commit also writes the recall rows of its messages (the generated
    tsvector makes them searchable at COMMIT); their embeddings are added later by long-term memory.
    """

    def __init__(self, acquire: Callable[[], Any]) -> None:
        self._acquire = acquire  # pool.acquire
        self.recall_skip: frozenset[str] | None = None  # built-in tools whose results recall skips
        self._pending: list[_PendingCommit] = []
        self._drainer: asyncio.Task[None] | None = None
        # Transactions committed so far; fewer than the number of commits means batching happened.
        self.transactions = 0
        self.pipelined = 0  # of those, batches written by `_write_all`

    async def commit(self, changes: Changes, *, append: bool = False) -> None:
        """Write `changes` with the next group; `append`: a turn's new rows (Store.append_turn)."""
        pending = _pending(changes, self.recall_skip, append)
        self._pending.append(pending)
        if self._drainer is None or self._drainer.done():
            # A task, not the caller: a cancelled caller must not abandon the others in its batch.
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name="pg-group-commit")
        await pending.done

    async def close(self) -> None:
        """Wait until everything queued is written."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._acquire() as con:
                    outcomes = await self._apply(con, batch)
            except Exception as exc:  # noqa: BLE001 - the connection failed: every caller in the batch hears it
                outcomes = [store_error(exc)] * len(batch)
            for pending, outcome in zip(batch, outcomes):
                if pending.done.done():  # the caller was cancelled
                    continue
                if outcome is None:
                    pending.done.set_result(None)
                else:
                    pending.done.set_exception(outcome)

    async def _apply(self, con: asyncpg.Connection, batch: list[_PendingCommit]) -> list[BaseException | None]:
        if len(batch) == 1:
            await _write(con, batch[0])  # one statement is its own transaction: one round trip in all
            self.transactions += 1
            return [None]
        if _pipelinable(batch):
            try:
                outcomes = await _write_all(con, batch)
            except Exception:  # noqa: BLE001 - tried again below, where each write fails alone
                if con.is_closed():
                    raise
            else:
                self.transactions += 1
                self.pipelined += 1
                return outcomes
        # One broke a rule and the pipelined transaction rolled back whole: each goes again in a savepoint.
        outcomes = []
        async with con.transaction():
            for pending in batch:
                try:
                    async with con.transaction():  # a savepoint
                        await _write(con, pending)
                    outcomes.append(None)
                except Exception as exc:  # noqa: BLE001 - rolled back to the savepoint, handed to that caller
                    outcomes.append(store_error(exc))
        self.transactions += 1
        return outcomes


def _pipelinable(batch: list[_PendingCommit]) -> bool:
    """No agent fenced twice: a second token's update would hide a refusal of the first."""
    fenced = [p.fence[0] for p in batch if p.fence is not None]
    return len(set(fenced)) == len(fenced)


async def _write(con: asyncpg.Connection, pending: _PendingCommit) -> None:
    """One commit in one statement: across a network, one round trip instead of one per table it writes, plus
    BEGIN and COMMIT (six for a turn's append)."""
    sql, args = _statement(pending)
    if await con.fetchval(sql, *args) == 0:
        assert pending.fence is not None
        await _refused(con, *pending.fence)


async def _write_all(con: asyncpg.Connection, batch: list[_PendingCommit]) -> list[BaseException | None]:
    """Several commits in one transaction, in arrival order (a later write of a row wins): each run of statements
    of one shape pipelined (`executemany` sends them all and waits once), then one read of the fences. BEGIN, one
    round trip per run (one, for turns' appends), the read, COMMIT, where a savepoint each made three per commit."""
    runs: list[tuple[str, list[list[Any]]]] = []
    for pending in batch:
        sql, args = _statement(pending)
        if runs and runs[-1][0] == sql:
            runs[-1][1].append(args)
        else:
            runs.append((sql, [args]))
    fenced = [pending.fence for pending in batch if pending.fence is not None]
    async with con.transaction():
        for sql, many in runs:
            await con.executemany(sql, many)
        rows = await con.fetch("SELECT id, fence FROM agents WHERE id = ANY($1::text[])",
                               [agent_id for agent_id, _ in fenced]) if fenced else []
    # Our update holds an accepted fence's row until COMMIT, and a fence only grows: one that is not our token
    # now was refused, and its gated writes wrote nothing.
    now = {row[0]: row[1] for row in rows}
    outcomes: list[BaseException | None] = []
    for pending in batch:
        if pending.fence is None or now.get(pending.fence[0]) == pending.fence[1]:
            outcomes.append(None)
        elif pending.fence[0] not in now:
            outcomes.append(NotFound("agent", pending.fence[0]))
        else:
            outcomes.append(_fence_lost(*pending.fence))
    return outcomes


def _statement(pending: _PendingCommit) -> tuple[str, list[Any]]:
    """The commit as one statement and its arguments; it returns how many fences it took (0 or 1), or 1 without
    a fence.

    Every write reads the fence's update (`EXISTS (SELECT 1 FROM fenced)`), so a refused fence writes nothing. The
    parts of one statement see the tables as they were before it and must not change one row twice, so: the
    agent's reshape count goes up in the fence's own update (other agents' in a part that skips it), and the
    eviction leaves alone the messages this commit writes (their rows say out of context already).
    """
    args: list[Any] = []

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    parts: list[str] = []
    gate = ""
    reshapes = bool(pending.reshaped or pending.evict_ids)
    fenced_id = ""
    if pending.fence is not None:
        fenced_id, token = param(pending.fence[0]), param(pending.fence[1])
        bump = ", reshapes = reshapes + 1" if reshapes else ""
        parts.append(f"fenced AS (UPDATE agents SET fence = {token}{bump} WHERE id = {fenced_id}"
                     f" AND fence <= {token} RETURNING 1)")
        gate = "EXISTS (SELECT 1 FROM fenced)"
    evicted = ""
    if pending.evict_ids:
        evicted = param(pending.evict_ids)
        written = param([row[0] for row in pending.messages])
        parts.append(f"e AS (UPDATE messages SET in_context = false WHERE id = ANY({evicted}::text[]) AND in_context"
                     f" AND id <> ALL({written}::text[]){' AND ' + gate if gate else ''})")
    for name, table, rows, upsert in (("b", BLOCKS, pending.blocks, True),
                                      ("m", MESSAGES, pending.messages, not pending.insert_only),
                                      ("r", RUNS, pending.runs, not pending.insert_only)):
        if rows:
            if upsert:  # ON CONFLICT cannot touch one row twice in a statement: a repeated id keeps its last version
                rows = list({row[0]: row for row in rows}.values())
            parts.append(f"{name} AS ({bulk_insert_sql(table, upsert, len(args) + 1, gate)})")
            args += as_columns(rows)
    if pending.recall:
        parts.append(f"c AS ({_recall_upsert(len(args) + 1, gate)})")
        args += as_columns(pending.recall)
    if reshapes:
        # Not only appended to: a copy of the history up to its last seq may no longer be the history.
        whose = f"id = ANY({param(pending.reshaped)}::text[])"
        if evicted:
            whose = f"({whose} OR id IN (SELECT agent_id FROM messages WHERE id = ANY({evicted}::text[])))"
        others = f" AND id <> {fenced_id} AND {gate}" if gate else ""
        parts.append(f"s AS (UPDATE agents SET reshapes = reshapes + 1 WHERE {whose}{others})")
    main = "SELECT count(*) FROM fenced" if gate else "SELECT 1"
    return (f"WITH {', '.join(parts)} {main}" if parts else main), args


async def _refused(con: asyncpg.Connection, agent_id: str, token: int) -> None:
    if await con.fetchval("SELECT 1 FROM agents WHERE id = $1", agent_id) is None:
        raise NotFound("agent", agent_id)
    raise _fence_lost(agent_id, token)


def _fence_lost(agent_id: str, token: int) -> FenceLost:
    return FenceLost(f"the turn lock of agent {agent_id} (fencing token {token}) was taken over by a "
                     "newer turn before this write: nothing of it was stored")
