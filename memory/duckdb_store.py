"""DuckDBStore: the embedded default `Store`: agents, blocks, messages and runs in one DuckDB file."""

from __future__ import annotations

import os
from typing import Any

import duckdb

from memory.duckdb_catalog import DuckDBCatalog
from memory.duckdb_commit import transaction
from memory.duckdb_connection import scalar
from memory.duckdb_rows import (
    AGENTS,
    BLOCKS,
    ID_IN_LIST,
    MESSAGES,
    RUNS,
    Row,
    agent_from_row,
    agent_row,
    as_columns,
    block_from_row,
    block_row,
    message_from_row,
    run_from_row,
)
from memory.models import Agent, Block, HistoryTail, Message, Run
from memory.store import ID_PAGE_SIZE, NotFound, Store

DATABASE_FILE = "memproxy.duckdb"

_AGENT_BLOCK_IDS = "(SELECT list(block_id ORDER BY position) FROM agent_blocks WHERE agent_id = agents.id)"


class DuckDBStore(DuckDBCatalog, Store):
    """Agents, blocks, messages, runs and custom tools in one DuckDB file.

    The connection, its worker thread and group commit are in `DuckDBConnection`; custom tools, MCP
    servers and export scans in `DuckDBCatalog`; agents, blocks, messages and runs here.
    """

    # --- agents -----------------------------------------------------------------------------
    async def create_agent(self, agent: Agent, new_blocks: list[Block]) -> None:
        values = agent_row(agent, self.secret_box)
        block_rows = [block_row(block) for block in new_blocks]
        block_ids = list(agent.block_ids)

        def work(con: duckdb.DuckDBPyConnection) -> None:
            with transaction(con):
                con.execute(AGENTS.insert_sql, values)
                if block_rows:
                    con.execute(BLOCKS.bulk_insert_sql, as_columns(block_rows))
                _attach_blocks(con, agent.id, block_ids)

        await self._run(work)

    async def get_agent(self, agent_id: str) -> Agent | None:
        # The block-id subquery takes the id as a parameter: correlated, it would join all attachments.
        sql = (
            f"SELECT {AGENTS.select_list},"
            " (SELECT list(block_id ORDER BY position) FROM agent_blocks WHERE agent_id = ?)"
            " FROM agents WHERE id = ?"
        )

        def work(con: duckdb.DuckDBPyConnection) -> Row | None:
            return con.execute(sql, [agent_id, agent_id]).fetchone()

        row = await self._run(work)
        return None if row is None else agent_from_row(row[:-1], row[-1], self.secret_box)

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
        where: list[str] = []
        params: list[Any] = []
        if name is not None:
            where.append("name = ?")
            params.append(name)
        if tags:
            match = "list_has_all" if match_all_tags else "list_has_any"
            where.append(f"{match}(from_json(tags, '[\"VARCHAR\"]'), ?::VARCHAR[])")
            params.append(list(tags))
        sql, params = _page_sql(
            f"SELECT {AGENTS.select_list}, {_AGENT_BLOCK_IDS} FROM agents", "agents", where, params,
            before=before, after=after, limit=limit, descending=not ascending,
        )
        rows = await self._run(lambda con: con.execute(sql, params).fetchall())
        return [agent_from_row(row[:-1], row[-1], self.secret_box) for row in rows]

    async def update_agent(self, agent: Agent) -> None:
        values = agent_row(agent, self.secret_box)
        block_ids = list(agent.block_ids)

        def work(con: duckdb.DuckDBPyConnection) -> None:
            with transaction(con):
                if scalar(con, AGENTS.update_by_id_sql, [*values[1:], values[0]]) == 0:
                    # An upsert here would resurrect an agent deleted while a turn was still running.
                    raise NotFound("agent", agent.id)
                con.execute("DELETE FROM agent_blocks WHERE agent_id = ?", [agent.id])
                _attach_blocks(con, agent.id, block_ids)

        await self._run(work)

    async def delete_agent(self, agent_id: str) -> bool:
        def work(con: duckdb.DuckDBPyConnection) -> bool:
            with transaction(con):
                if scalar(con, "DELETE FROM agents WHERE id = ?", [agent_id]) == 0:
                    return False
                detached = [
                    row[0]
                    for row in con.execute(
                        "DELETE FROM agent_blocks WHERE agent_id = ? RETURNING block_id", [agent_id]
                    ).fetchall()
                ]
                if detached:
                    # Only this agent's blocks are candidates: a standalone block nobody uses is kept.
                    con.execute(
                        f"DELETE FROM blocks WHERE {ID_IN_LIST} AND id NOT IN (SELECT block_id FROM agent_blocks)",
                        [detached],
                    )
                con.execute("DELETE FROM messages WHERE agent_id = ?", [agent_id])
                con.execute("DELETE FROM runs WHERE agent_id = ?", [agent_id])
                return True

        return await self._run(work)

    async def count_agents(self) -> int:
        return await self._run(lambda con: scalar(con, "SELECT count(*) FROM agents", []))

    # --- blocks -----------------------------------------------------------------------------
    async def create_block(self, block: Block) -> None:
        values = block_row(block)
        await self._run(lambda con: con.execute(BLOCKS.insert_sql, values))

    async def get_block(self, block_id: str) -> Block | None:
        sql = f"SELECT {BLOCKS.select_list} FROM blocks WHERE id = ?"
        row = await self._run(lambda con: con.execute(sql, [block_id]).fetchone())
        return None if row is None else block_from_row(row)

    async def get_blocks(self, block_ids: list[str]) -> list[Block]:
        if not block_ids:
            return []
        sql = f"SELECT {BLOCKS.select_list} FROM blocks WHERE {ID_IN_LIST}"
        rows = await self._run(lambda con: con.execute(sql, [list(block_ids)]).fetchall())
        by_id = {row[0]: row for row in rows}
        # Built per requested id so a repeated id still yields an independent copy.
        return [block_from_row(by_id[block_id]) for block_id in block_ids if block_id in by_id]

    async def attached_blocks(self, agent_id: str) -> list[Block]:
        sql = (f"SELECT {BLOCKS.select_list} FROM blocks"
               " WHERE id IN (SELECT block_id FROM agent_blocks WHERE agent_id = ?)")
        rows = await self._run(lambda con: con.execute(sql, [agent_id]).fetchall())
        return [block_from_row(row) for row in rows]

    async def list_blocks(
        self, *, label: str | None = None, before: str | None = None, after: str | None = None, limit: int | None = 50
    ) -> list[Block]:
        where: list[str] = []
        params: list[Any] = []
        if label is not None:
            where.append("label = ?")
            params.append(label)
        sql, params = _page_sql(
            f"SELECT {BLOCKS.select_list} FROM blocks", "blocks", where, params,
            before=before, after=after, limit=limit, descending=False,
        )
        rows = await self._run(lambda con: con.execute(sql, params).fetchall())
        return [block_from_row(row) for row in rows]

    async def delete_block(self, block_id: str) -> bool:
        def work(con: duckdb.DuckDBPyConnection) -> bool:
            with transaction(con):
                con.execute("DELETE FROM agent_blocks WHERE block_id = ?", [block_id])
                return scalar(con, "DELETE FROM blocks WHERE id = ?", [block_id]) > 0

        return await self._run(work)

    async def agents_for_block(self, block_id: str) -> list[str]:
        sql = "SELECT agent_id FROM agent_blocks WHERE block_id = ? ORDER BY agent_id"
        rows = await self._run(lambda con: con.execute(sql, [block_id]).fetchall())
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
        where = ["agent_id = ?"]
        params: list[Any] = [agent_id]
        if in_context_only:
            where.append("in_context")
        # An unknown cursor makes the subquery NULL, so the page is empty rather than unbounded.
        if after is not None:
            where.append("seq > (SELECT seq FROM messages WHERE id = ? AND agent_id = ?)")
            params += [after, agent_id]
        if before is not None:
            where.append("seq < (SELECT seq FROM messages WHERE id = ? AND agent_id = ?)")
            params += [before, agent_id]
        order = "ASC" if ascending else "DESC"
        sql = f"SELECT {MESSAGES.select_list} FROM messages WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"
        params.append(limit)
        # Rows become messages on the store's thread: a loaded history's thousands (~7 us each) would hold the event
        # loop at once, where the interpreter lets the loop's thread in between (its switch interval, 5 ms).
        return await self._run(lambda con: [message_from_row(row) for row in con.execute(sql, params).fetchall()])

    async def get_messages(self, message_ids: list[str]) -> list[Message]:
        if not message_ids:
            return []
        sql = f"SELECT {MESSAGES.select_list} FROM messages WHERE {ID_IN_LIST} ORDER BY seq, id"
        return await self._run(lambda con: [message_from_row(row) for row in
                                            con.execute(sql, [list(message_ids)]).fetchall()])

    async def count_messages(self, agent_id: str) -> int:
        sql = "SELECT count(*) FROM messages WHERE agent_id = ?"
        return await self._run(lambda con: scalar(con, sql, [agent_id]))

    async def agent_ids(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        sql = "SELECT id FROM agents WHERE id > ? ORDER BY id LIMIT ?"
        rows = await self._run(lambda con: con.execute(sql, [after or "", limit]).fetchall())
        return [r[0] for r in rows]

    async def recall_candidate_ids(
        self, skip_tool_names: list[str], *, after: str | None = None, limit: int = ID_PAGE_SIZE
    ) -> list[str]:
        # A plain `id > ?` (no coalesce) lets DuckDB push the bound into the scan: twice as fast per page.
        sql = ("SELECT id FROM messages WHERE id > ? AND content IS NOT NULL AND length(content) > 0"
               " AND (role IN ('user', 'assistant') OR (role = 'tool' AND NOT list_contains(?, coalesce(name, ''))))"
               " ORDER BY id LIMIT ?")
        rows = await self._run(lambda con: con.execute(sql, [after or "", list(skip_tool_names), limit]).fetchall())
        return [r[0] for r in rows]

    async def history_since(self, agent_id: str, seq: int) -> HistoryTail:
        totals = ("SELECT (SELECT reshapes FROM agents WHERE id = ?), coalesce(max(seq), 0), count(*) "
                  "FROM messages WHERE agent_id = ? AND seq > ?")
        rows = f"SELECT {MESSAGES.select_list} FROM messages WHERE agent_id = ? AND in_context AND seq > ? ORDER BY seq"

        def work(con: duckdb.DuckDBPyConnection) -> HistoryTail:
            found = con.execute(totals, [agent_id, agent_id, seq]).fetchone()
            assert found is not None
            new = [message_from_row(row) for row in con.execute(rows, [agent_id, seq]).fetchall()]
            return HistoryTail(new=new, reshapes=int(found[0] or 0), top=int(found[1]), added=int(found[2]))

        return await self._run(work)

    async def reset_messages(self, agent_id: str) -> None:
        def work(con: duckdb.DuckDBPyConnection) -> None:
            with transaction(con):
                con.execute("UPDATE messages SET in_context = false WHERE agent_id = ? AND in_context", [agent_id])
                con.execute("UPDATE agents SET reshapes = reshapes + 1 WHERE id = ?", [agent_id])

        await self._run(work)

    # --- runs -------------------------------------------------------------------------------
    async def get_run(self, run_id: str) -> Run | None:
        sql = f"SELECT {RUNS.select_list} FROM runs WHERE id = ?"
        row = await self._run(lambda con: con.execute(sql, [run_id]).fetchone())
        return None if row is None else run_from_row(row)

    async def list_runs(
        self, *, agent_id: str | None = None, before: str | None = None, after: str | None = None, limit: int | None = 50
    ) -> list[Run]:
        where: list[str] = []
        params: list[Any] = []
        if agent_id is not None:
            where.append("agent_id = ?")
            params.append(agent_id)
        sql, params = _page_sql(
            f"SELECT {RUNS.select_list} FROM runs", "runs", where, params,
            before=before, after=after, limit=limit, descending=True,
        )
        rows = await self._run(lambda con: con.execute(sql, params).fetchall())
        return [run_from_row(row) for row in rows]


def open_store(data_dir: str, *, memory_limit: str | None = None) -> DuckDBStore:
    """A (not yet opened) store at `<data_dir>/memproxy.duckdb`."""
    return DuckDBStore(os.path.join(data_dir, DATABASE_FILE), memory_limit=memory_limit)


def _attach_blocks(con: duckdb.DuckDBPyConnection, agent_id: str, block_ids: list[str]) -> None:
    if not block_ids:
        return
    found = {row[0] for row in con.execute(f"SELECT id FROM blocks WHERE {ID_IN_LIST}", [block_ids]).fetchall()}
    missing = [block_id for block_id in block_ids if block_id not in found]
    if missing:
        raise NotFound("block", missing[0], f"blocks do not exist: {', '.join(missing)}")
    con.execute(
        "INSERT INTO agent_blocks SELECT ?, unnest(?::VARCHAR[]), unnest(?::INTEGER[])",
        [agent_id, block_ids, list(range(len(block_ids)))],
    )


def _page_sql(
    select: str,
    table: str,
    where: list[str],
    params: list[Any],
    *,
    before: str | None,
    after: str | None,
    limit: int | None,
    descending: bool,
) -> tuple[str, list[Any]]:
    """Add (created_at, id) cursor bounds, the order and the limit to a listing query."""
    where = list(where)
    params = list(params)
    # Row comparison orders by created_at, then id; an unknown cursor yields NULL and so no rows.
    if after is not None:
        where.append(f"(created_at, id) > (SELECT (created_at, id) FROM {table} WHERE id = ?)")
        params.append(after)
    if before is not None:
        where.append(f"(created_at, id) < (SELECT (created_at, id) FROM {table} WHERE id = ?)")
        params.append(before)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    order = "DESC" if descending else "ASC"
    params.append(limit)
    return f"{select}{clause} ORDER BY created_at {order}, id {order} LIMIT ?", params
