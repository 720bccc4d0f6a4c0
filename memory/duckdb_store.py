"""DuckDBStore: the embedded default `Store`. One connection, one worker thread, group commit."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import duckdb

from memory import duckdb_portable
from memory.duckdb_commit import GroupCommit, transaction
from memory.duckdb_errors import store_error
from memory.duckdb_rows import (
    AGENTS,
    BLOCKS,
    ID_IN_LIST,
    MESSAGES,
    RUNS,
    TOOLS,
    Row,
    agent_from_row,
    agent_row,
    as_columns,
    block_from_row,
    block_row,
    message_from_row,
    run_from_row,
    tool_from_row,
    tool_row,
)
from memory.migrations import apply_migrations
from memory.mcp_servers import DUCKDB_MCP_SELECT, MCP_COLUMNS, McpServer, mcp_from_row, mcp_row
from memory.models import Agent, Block, Changes, Message, Run, Tool
from memory.store import ID_PAGE_SIZE, NotFound, Store

T = TypeVar("T")

DATABASE_FILE = "memproxy.duckdb"

_AGENT_BLOCK_IDS = "(SELECT list(block_id ORDER BY position) FROM agent_blocks WHERE agent_id = agents.id)"


class DuckDBStore(Store):
    """Agents, blocks, messages, runs and custom tools in one DuckDB file.

    DuckDB connections are not thread-safe, so the one connection lives on one worker thread and
    every query is handed to it; the event loop never blocks on the database.
    """

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
                if _scalar(con, AGENTS.update_by_id_sql, [*values[1:], values[0]]) == 0:
                    # An upsert here would resurrect an agent deleted while a turn was still running.
                    raise NotFound("agent", agent.id)
                con.execute("DELETE FROM agent_blocks WHERE agent_id = ?", [agent.id])
                _attach_blocks(con, agent.id, block_ids)

        await self._run(work)

    async def delete_agent(self, agent_id: str) -> bool:
        def work(con: duckdb.DuckDBPyConnection) -> bool:
            with transaction(con):
                if _scalar(con, "DELETE FROM agents WHERE id = ?", [agent_id]) == 0:
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
        return await self._run(lambda con: _scalar(con, "SELECT count(*) FROM agents", []))

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
                return _scalar(con, "DELETE FROM blocks WHERE id = ?", [block_id]) > 0

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
        rows = await self._run(lambda con: con.execute(sql, params).fetchall())
        return [message_from_row(row) for row in rows]

    async def get_messages(self, message_ids: list[str]) -> list[Message]:
        if not message_ids:
            return []
        sql = f"SELECT {MESSAGES.select_list} FROM messages WHERE {ID_IN_LIST} ORDER BY seq, id"
        rows = await self._run(lambda con: con.execute(sql, [list(message_ids)]).fetchall())
        return [message_from_row(row) for row in rows]

    async def count_messages(self, agent_id: str) -> int:
        sql = "SELECT count(*) FROM messages WHERE agent_id = ?"
        return await self._run(lambda con: _scalar(con, sql, [agent_id]))

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

    async def max_message_seq(self, agent_id: str) -> int:
        sql = "SELECT coalesce(max(seq), 0) FROM messages WHERE agent_id = ?"
        return await self._run(lambda con: _scalar(con, sql, [agent_id]))

    async def reset_messages(self, agent_id: str) -> None:
        sql = "UPDATE messages SET in_context = false WHERE agent_id = ? AND in_context"
        await self._run(lambda con: con.execute(sql, [agent_id]))

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

    # --- custom tools -----------------------------------------------------------------------
    async def create_tool(self, tool: Tool) -> None:
        values = tool_row(tool)
        await self._run(lambda con: con.execute(TOOLS.insert_sql, values))

    async def get_tool(self, tool_id: str) -> Tool | None:
        sql = f"SELECT {TOOLS.select_list} FROM tools WHERE id = ?"
        row = await self._run(lambda con: con.execute(sql, [tool_id]).fetchone())
        return None if row is None else tool_from_row(row)

    async def list_tools(self) -> list[Tool]:
        sql = f"SELECT {TOOLS.select_list} FROM tools ORDER BY created_at, id"
        rows = await self._run(lambda con: con.execute(sql).fetchall())
        return [tool_from_row(row) for row in rows]

    async def update_tool(self, tool: Tool) -> None:
        values = tool_row(tool)

        def work(con: duckdb.DuckDBPyConnection) -> None:
            if _scalar(con, TOOLS.update_by_id_sql, [*values[1:], values[0]]) == 0:
                raise NotFound("tool", tool.id)

        await self._run(work)

    async def delete_tool(self, tool_id: str) -> bool:
        return await self._run(lambda con: _scalar(con, "DELETE FROM tools WHERE id = ?", [tool_id]) > 0)

    # --- MCP servers ------------------------------------------------------------------------
    async def create_mcp_server(self, server: McpServer) -> None:
        values = list(mcp_row(server, self.secret_box))
        await self._run(lambda con: con.execute(f"INSERT INTO mcp_servers ({MCP_COLUMNS}) VALUES "
                                                "(?, ?, ?, ?, ?, ?, ?)", values))

    async def list_mcp_servers(self) -> list[McpServer]:
        rows = await self._run(lambda con: con.execute(DUCKDB_MCP_SELECT).fetchall())
        return [mcp_from_row(row, self.secret_box) for row in rows]

    async def update_mcp_server(self, server: McpServer) -> None:
        id_, *values = mcp_row(server, self.secret_box)
        sql = "UPDATE mcp_servers SET server_name = ?, type = ?, config = ?, tools = ?, created_at = ?, " \
              "updated_at = ? WHERE id = ?"

        def work(con: duckdb.DuckDBPyConnection) -> None:
            if _scalar(con, sql, [*values, id_]) == 0:
                raise NotFound("mcp server", id_)

        await self._run(work)

    async def delete_mcp_server(self, server_id: str) -> bool:
        return await self._run(lambda con: _scalar(con, "DELETE FROM mcp_servers WHERE id = ?", [server_id]) > 0)

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

    # --- export / import (memory.portable) ----------------------------------------------------
    async def scan(self, kind: str, *, after: str | None = None, limit: int = 1000) -> list[Any]:
        return await self._run(lambda con: duckdb_portable.scan(con, kind, after, limit))

    async def existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        return await self._run(lambda con: duckdb_portable.existing_ids(con, kind, list(ids)))


    async def memory_figures(self) -> dict[str, float]:
        """MB in DuckDB's buffer pool and in its WAL file (for the memory report)."""
        def work(con: duckdb.DuckDBPyConnection) -> float:
            return float(_scalar(con, "SELECT sum(memory_usage_bytes) FROM duckdb_memory()", []) or 0)

        wal = self.path + ".wal"
        size = os.path.getsize(wal) if os.path.exists(wal) else 0
        return {"duckdb": await self._run(work) / 2**20, "duckdb_wal": size / 2**20}


def open_store(data_dir: str, *, memory_limit: str | None = None) -> DuckDBStore:
    """A (not yet opened) store at `<data_dir>/memproxy.duckdb`."""
    return DuckDBStore(os.path.join(data_dir, DATABASE_FILE), memory_limit=memory_limit)


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> Any:
    """The single value a query returns; for INSERT, UPDATE and DELETE, the number of rows changed."""
    row = con.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


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
