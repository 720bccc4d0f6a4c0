"""PostgresStore: the server-grade `Store` on asyncpg with a connection pool and group commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from memory.backends import redact_url
from memory.duckdb_rows import (
    AGENTS,
    BLOCKS,
    MESSAGES,
    RUNS,
    agent_from_row,
    agent_row,
    block_from_row,
    block_row,
    message_from_row,
    run_from_row,
)
from memory.models import Agent, Block, Changes, HistoryTail, Message, Run
from memory.postgres_catalog import AGENT_BLOCK_IDS, PgCatalog
from memory.postgres_commit import PgGroupCommit
from memory.postgres_migrations import apply_migrations
from memory.postgres_sql import (
    bulk_insert_sql,
    CONNECT_TIMEOUT,
    insert_sql,
    keep_session,
    row_safe,
    select_list,
    store_error,
    text_safe,
    update_by_id_sql,
)
from memory.store import ID_PAGE_SIZE, NotFound, Store, StoreError

T = TypeVar("T")
# Rows made into messages per pass of the event loop: asyncpg hands a listing over on the loop's thread (~5 us a
# row), and a freshly loaded 5,000-message history made in one pass held every other stream ~25 ms.
ROWS_PER_PASS = 256


async def messages_from_rows(rows: Sequence[Any]) -> list[Message]:
    """The rows of a message listing as messages, a slice per pass of the event loop when there are many."""
    out: list[Message] = []
    for start in range(0, len(rows), ROWS_PER_PASS):
        if start:
            await asyncio.sleep(0)
        out += [message_from_row(tuple(row)) for row in rows[start:start + ROWS_PER_PASS]]
    return out


class PostgresStore(PgCatalog, Store):
    """Agents, blocks, messages and runs in PostgreSQL; any number of processes may share the database."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._group: PgGroupCommit | None = None
        self._recall_skip: frozenset[str] | None = None  # set: recall rows are written by commit()

    # --- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(self.dsn, min_size=self._min_size, max_size=self._max_size,
                                             reset=keep_session, timeout=CONNECT_TIMEOUT)
        except (OSError, asyncpg.PostgresError) as exc:
            # The URL is named without its password: this message ends up in the start-up log.
            raise StoreError(f"cannot open the PostgreSQL database {redact_url(self.dsn)}: {exc}") from exc
        try:
            async with pool.acquire() as con:
                await apply_migrations(con)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._group = PgGroupCommit(pool.acquire)
        self._group.recall_skip = self._recall_skip

    async def close(self) -> None:
        pool, group = self._pool, self._group
        if pool is None or group is None:
            return
        try:
            await group.close()
        finally:
            self._pool = self._group = None
            await pool.close()

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]], *, transaction: bool = False) -> T:
        pool = self._pool
        if pool is None:
            raise RuntimeError("PostgresStore is not open")
        try:
            async with pool.acquire() as con:
                if not transaction:
                    return await work(con)
                async with con.transaction():
                    return await work(con)
        except Exception as exc:  # noqa: BLE001 - mapped to the Store's errors, or raised as it was
            error = store_error(exc)
            if error is exc:
                raise
            raise error from exc

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(lambda con: con.fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda con: con.fetchrow(sql, *args))

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run(lambda con: con.fetchval(sql, *args))

    # --- agents -----------------------------------------------------------------------------
    async def create_agent(self, agent: Agent, new_blocks: list[Block]) -> None:
        values = row_safe(agent_row(agent, self.secret_box))
        block_rows = [row_safe(block_row(block)) for block in new_blocks]
        block_ids = list(agent.block_ids)

        async def work(con: asyncpg.Connection) -> None:
            await con.execute(insert_sql(AGENTS), *values)
            if block_rows:
                await con.execute(bulk_insert_sql(BLOCKS, False), *[list(c) for c in zip(*block_rows)])
            await _attach_blocks(con, agent.id, block_ids)

        await self._run(work, transaction=True)

    async def get_agent(self, agent_id: str) -> Agent | None:
        sql = f"SELECT {select_list(AGENTS)}, {AGENT_BLOCK_IDS} FROM agents WHERE id = $1"
        row = await self._fetchrow(sql, agent_id)
        return None if row is None else agent_from_row(tuple(row)[:-1], row[-1], self.secret_box)

    async def list_agents(
        self,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        match_all_tags: bool = False,
        before: str | None = None,
        after: str | None = None,
        limit: int | None = 50,
        ascending: bool = True,
    ) -> list[Agent]:
        query = _Query(f"SELECT {select_list(AGENTS)}, {AGENT_BLOCK_IDS} FROM agents")
        if name is not None:
            query.where("name = {}", name)
        if tags:
            query.where(f"tags::jsonb {'?&' if match_all_tags else '?|'} {{}}::text[]", list(tags))
        sql, args = query.page("agents", before=before, after=after, limit=limit, descending=not ascending)
        return [agent_from_row(tuple(row)[:-1], row[-1], self.secret_box) for row in await self._fetch(sql, *args)]

    async def update_agent(self, agent: Agent) -> None:
        values = row_safe(agent_row(agent, self.secret_box))
        block_ids = list(agent.block_ids)

        async def work(con: asyncpg.Connection) -> None:
            if await con.execute(update_by_id_sql(AGENTS), *values) == "UPDATE 0":
                # An upsert here would resurrect an agent deleted while a turn was still running.
                raise NotFound("agent", agent.id)
            await con.execute("DELETE FROM agent_blocks WHERE agent_id = $1", agent.id)
            await _attach_blocks(con, agent.id, block_ids)

        await self._run(work, transaction=True)

    async def delete_agent(self, agent_id: str) -> bool:
        async def work(con: asyncpg.Connection) -> bool:
            if await con.execute("DELETE FROM agents WHERE id = $1", agent_id) == "DELETE 0":
                return False
            detached = [r[0] for r in await con.fetch(
                "DELETE FROM agent_blocks WHERE agent_id = $1 RETURNING block_id", agent_id)]
            if detached:
                # Only this agent's blocks are candidates: a standalone block nobody uses is kept.
                await con.execute(
                    "DELETE FROM blocks WHERE id = ANY($1::text[])"
                    " AND NOT EXISTS (SELECT 1 FROM agent_blocks WHERE block_id = blocks.id)", detached)
            await con.execute("DELETE FROM messages WHERE agent_id = $1", agent_id)
            await con.execute("DELETE FROM runs WHERE agent_id = $1", agent_id)
            if self._recall_skip is not None:
                # Long-term memory lives in this database: the agent goes whole, nothing left to repair.
                await con.execute("DELETE FROM recall WHERE agent_id = $1", agent_id)
                await con.execute("DELETE FROM passages WHERE agent_id = $1", agent_id)
            return True

        return await self._run(work, transaction=True)

    async def count_agents(self) -> int:
        return int(await self._fetchval("SELECT count(*) FROM agents"))

    # --- blocks -----------------------------------------------------------------------------
    async def create_block(self, block: Block) -> None:
        values = row_safe(block_row(block))
        await self._run(lambda con: con.execute(insert_sql(BLOCKS), *values))

    async def get_block(self, block_id: str) -> Block | None:
        row = await self._fetchrow(f"SELECT {select_list(BLOCKS)} FROM blocks WHERE id = $1", block_id)
        return None if row is None else block_from_row(tuple(row))

    async def get_blocks(self, block_ids: list[str]) -> list[Block]:
        if not block_ids:
            return []
        rows = await self._fetch(f"SELECT {select_list(BLOCKS)} FROM blocks WHERE id = ANY($1::text[])",
                                 list(block_ids))
        by_id = {row[0]: tuple(row) for row in rows}
        # Built per requested id so a repeated id still yields an independent copy.
        return [block_from_row(by_id[block_id]) for block_id in block_ids if block_id in by_id]

    async def attached_blocks(self, agent_id: str) -> list[Block]:
        rows = await self._fetch(f"SELECT {select_list(BLOCKS)} FROM blocks"
                                 " WHERE id IN (SELECT block_id FROM agent_blocks WHERE agent_id = $1)", agent_id)
        return [block_from_row(tuple(row)) for row in rows]

    async def list_blocks(
        self, *, label: str | None = None, before: str | None = None, after: str | None = None, limit: int | None = 50
    ) -> list[Block]:
        query = _Query(f"SELECT {select_list(BLOCKS)} FROM blocks")
        if label is not None:
            query.where("label = {}", label)
        sql, args = query.page("blocks", before=before, after=after, limit=limit, descending=False)
        return [block_from_row(tuple(row)) for row in await self._fetch(sql, *args)]

    async def delete_block(self, block_id: str) -> bool:
        async def work(con: asyncpg.Connection) -> bool:
            await con.execute("DELETE FROM agent_blocks WHERE block_id = $1", block_id)
            return await con.execute("DELETE FROM blocks WHERE id = $1", block_id) != "DELETE 0"

        return await self._run(work, transaction=True)

    async def agents_for_block(self, block_id: str) -> list[str]:
        rows = await self._fetch("SELECT agent_id FROM agent_blocks WHERE block_id = $1 ORDER BY agent_id", block_id)
        return [row[0] for row in rows]

    # --- messages ---------------------------------------------------------------------------
    async def list_messages(
        self,
        agent_id: str,
        *,
        before: str | None = None,
        after: str | None = None,
        limit: int | None = 100,
        ascending: bool = True,
        in_context_only: bool = False,
    ) -> list[Message]:
        query = _Query(f"SELECT {select_list(MESSAGES)} FROM messages")
        query.where("agent_id = {}", agent_id)
        if in_context_only:
            query.where("in_context")
        # An unknown cursor makes the subquery NULL, so the page is empty rather than unbounded.
        if after is not None:
            query.where("seq > (SELECT seq FROM messages WHERE id = {} AND agent_id = {})", after, agent_id)
        if before is not None:
            query.where("seq < (SELECT seq FROM messages WHERE id = {} AND agent_id = {})", before, agent_id)
        sql, args = query.ordered(f"seq {'ASC' if ascending else 'DESC'}", limit)
        return await messages_from_rows(await self._fetch(sql, *args))

    async def get_messages(self, message_ids: list[str]) -> list[Message]:
        if not message_ids:
            return []
        sql = f"SELECT {select_list(MESSAGES)} FROM messages WHERE id = ANY($1::text[]) ORDER BY seq, id"
        return await messages_from_rows(await self._fetch(sql, list(message_ids)))

    async def count_messages(self, agent_id: str) -> int:
        return int(await self._fetchval("SELECT count(*) FROM messages WHERE agent_id = $1", agent_id))

    async def agent_ids(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        rows = await self._fetch("SELECT id FROM agents WHERE id > $1 ORDER BY id LIMIT $2", after or "", limit)
        return [row[0] for row in rows]

    async def recall_candidate_ids(
        self, skip_tool_names: list[str], *, after: str | None = None, limit: int = ID_PAGE_SIZE
    ) -> list[str]:
        sql = ("SELECT id FROM messages WHERE id > $1 AND content IS NOT NULL AND length(content) > 0"
               " AND (role IN ('user', 'assistant') OR (role = 'tool' AND NOT coalesce(name, '') = ANY($2::text[])))"
               " ORDER BY id LIMIT $3")
        rows = await self._fetch(sql, after or "", list(skip_tool_names), limit)
        return [row[0] for row in rows]

    async def history_since(self, agent_id: str, seq: int) -> HistoryTail:
        # Only the rows after `seq` (the (agent_id, seq) index): what a stale copy lacks, not the whole history.
        # One statement, one snapshot: the count, the top seq and the rows agree (and one round trip, not two).
        sql = (f"SELECT {select_list(MESSAGES)}, t.reshapes, t.top, t.added FROM (SELECT (SELECT reshapes FROM agents"
               " WHERE id = $1) AS reshapes, coalesce(max(seq), 0) AS top, count(*) AS added FROM messages"
               " WHERE agent_id = $1 AND seq > $2) AS t"
               " LEFT JOIN messages ON agent_id = $1 AND in_context AND seq > $2 ORDER BY seq")
        rows = await self._fetch(sql, agent_id, seq)
        reshapes, top, added = rows[0][-3:]  # a row even without messages (all of theirs null)
        new = await messages_from_rows([row[:-3] for row in rows if row[0] is not None])
        return HistoryTail(new=new, reshapes=int(reshapes or 0), top=int(top), added=int(added))

    async def reset_messages(self, agent_id: str) -> None:
        async def work(con: asyncpg.Connection) -> None:
            await con.execute("UPDATE messages SET in_context = false WHERE agent_id = $1 AND in_context", agent_id)
            await con.execute("UPDATE agents SET reshapes = reshapes + 1 WHERE id = $1", agent_id)

        await self._run(work, transaction=True)

    # --- runs -------------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> Run | None:
        row = await self._fetchrow(f"SELECT {select_list(RUNS)} FROM runs WHERE id = $1", run_id)
        return None if row is None else run_from_row(tuple(row))

    async def list_runs(
        self, *, agent_id: str | None = None, before: str | None = None, after: str | None = None, limit: int | None = 50
    ) -> list[Run]:
        query = _Query(f"SELECT {select_list(RUNS)} FROM runs")
        if agent_id is not None:
            query.where("agent_id = {}", agent_id)
        sql, args = query.page("runs", before=before, after=after, limit=limit, descending=True)
        return [run_from_row(tuple(row)) for row in await self._fetch(sql, *args)]

    # --- writes -----------------------------------------------------------------------------
    async def commit(self, changes: Changes) -> None:
        await self._commit(changes, append=False)

    async def append_turn(self, changes: Changes) -> None:
        await self._commit(changes, append=changes.insert_only)  # a rewrite would reshape its agent

    async def _commit(self, changes: Changes, *, append: bool) -> None:
        if not changes:
            return
        if self._group is None:
            raise RuntimeError("PostgresStore is not open")
        await self._group.commit(changes, append=append)

    def index_recall_in_commit(self, skip_tool_names: frozenset[str]) -> bool:
        """The recall and passages tables are in this database (migration 2): write recall rows in commit()."""
        self._recall_skip = frozenset(skip_tool_names)
        if self._group is not None:
            self._group.recall_skip = self._recall_skip
        return True

    @property
    def commit_transactions(self) -> int:
        """Transactions the group commit has run; fewer than `commit` calls means batching."""
        return 0 if self._group is None else self._group.transactions

    @property
    def commit_pipelined(self) -> int:
        """Of those, batches of commits sent pipelined (one round trip for all their statements of a shape)."""
        return 0 if self._group is None else self._group.pipelined


async def _attach_blocks(con: asyncpg.Connection, agent_id: str, block_ids: list[str]) -> None:
    if not block_ids:
        return
    found = {r[0] for r in await con.fetch("SELECT id FROM blocks WHERE id = ANY($1::text[])", block_ids)}
    missing = [block_id for block_id in block_ids if block_id not in found]
    if missing:
        raise NotFound("block", missing[0], f"blocks do not exist: {', '.join(missing)}")
    await con.execute(
        "INSERT INTO agent_blocks SELECT $1, b, p FROM unnest($2::text[], $3::int4[]) AS u(b, p)",
        agent_id, block_ids, list(range(len(block_ids))),
    )


class _Query:
    """A SELECT with numbered parameters: each `{}` in a condition becomes the next `$n`."""

    def __init__(self, select: str) -> None:
        self.select = select
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def where(self, condition: str, *args: Any) -> None:
        numbers = [f"${len(self.args) + i}" for i in range(1, len(args) + 1)]
        self.conditions.append(condition.format(*numbers))
        self.args.extend(text_safe(a) for a in args)

    def ordered(self, order: str, limit: int | None) -> tuple[str, list[Any]]:
        clause = f" WHERE {' AND '.join(self.conditions)}" if self.conditions else ""
        args = [*self.args, limit]
        return f"{self.select}{clause} ORDER BY {order} LIMIT ${len(args)}", args

    def page(
        self, table: str, *, before: str | None, after: str | None, limit: int | None, descending: bool
    ) -> tuple[str, list[Any]]:
        """Add (created_at, id) cursor bounds; an unknown cursor yields NULL and so no rows."""
        if after is not None:
            self.where(f"(created_at, id) > (SELECT created_at, id FROM {table} WHERE id = {{}})", after)
        if before is not None:
            self.where(f"(created_at, id) < (SELECT created_at, id FROM {table} WHERE id = {{}})", before)
        order = "DESC" if descending else "ASC"
        return self.ordered(f"created_at {order}, id {order}", limit)
