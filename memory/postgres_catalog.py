"""PostgresStore's catalog side: custom tools, MCP servers, and the record scans of export/import.

A mixin of memory.postgres_store.PostgresStore (split from it along this seam: these queries share nothing
with the agents, messages and group commit beside them but the pool's `_run` / `_fetch` / `_fetchrow`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from memory.duckdb_rows import (
    AGENTS,
    BLOCKS,
    MESSAGES,
    RUNS,
    TOOLS,
    Table,
    agent_from_row,
    block_from_row,
    message_from_row,
    run_from_row,
    tool_from_row,
    tool_row,
)
from memory.mcp_servers import MCP_COLUMNS, McpServer, mcp_from_row, mcp_row
from memory.models import Tool
from memory.postgres_sql import insert_sql, row_safe, select_list, update_by_id_sql
from memory.secretbox import SecretBox
from memory.store import PORTABLE_KINDS, NotFound

AGENT_BLOCK_IDS = "(SELECT array_agg(block_id ORDER BY position) FROM agent_blocks WHERE agent_id = agents.id)"


class PgCatalog:
    """Tools, MCP servers and export scans over the store's pool (provided by PostgresStore)."""

    secret_box: SecretBox | None
    _run: Callable[..., Awaitable[Any]]
    _fetch: Callable[..., Awaitable[list[asyncpg.Record]]]
    _fetchrow: Callable[..., Awaitable[asyncpg.Record | None]]

    # --- custom tools -----------------------------------------------------------------------
    async def create_tool(self, tool: Tool) -> None:
        values = row_safe(tool_row(tool))
        await self._run(lambda con: con.execute(insert_sql(TOOLS), *values))

    async def get_tool(self, tool_id: str) -> Tool | None:
        row = await self._fetchrow(f"SELECT {select_list(TOOLS)} FROM tools WHERE id = $1", tool_id)
        return None if row is None else tool_from_row(tuple(row))

    async def list_tools(self) -> list[Tool]:
        rows = await self._fetch(f"SELECT {select_list(TOOLS)} FROM tools ORDER BY created_at, id")
        return [tool_from_row(tuple(row)) for row in rows]

    async def update_tool(self, tool: Tool) -> None:
        values = row_safe(tool_row(tool))
        if await self._run(lambda con: con.execute(update_by_id_sql(TOOLS), *values)) == "UPDATE 0":
            raise NotFound("tool", tool.id)

    async def delete_tool(self, tool_id: str) -> bool:
        return await self._run(lambda con: con.execute("DELETE FROM tools WHERE id = $1", tool_id)) != "DELETE 0"

    # --- MCP servers ------------------------------------------------------------------------
    async def create_mcp_server(self, server: McpServer) -> None:
        values = row_safe(mcp_row(server, self.secret_box))
        await self._run(lambda con: con.execute(f"INSERT INTO mcp_servers ({MCP_COLUMNS}) "
                                                "VALUES ($1, $2, $3, $4, $5, $6, $7)", *values))

    async def list_mcp_servers(self) -> list[McpServer]:
        rows = await self._fetch(f"SELECT {MCP_COLUMNS} FROM mcp_servers ORDER BY created_at, id")
        return [mcp_from_row(tuple(row), self.secret_box) for row in rows]

    async def update_mcp_server(self, server: McpServer) -> None:
        values = row_safe(mcp_row(server, self.secret_box))
        sql = ("UPDATE mcp_servers SET server_name = $2, type = $3, config = $4, tools = $5, created_at = $6, "
               "updated_at = $7 WHERE id = $1")
        if await self._run(lambda con: con.execute(sql, *values)) == "UPDATE 0":
            raise NotFound("mcp server", server.id)

    async def delete_mcp_server(self, server_id: str) -> bool:
        status = await self._run(lambda con: con.execute("DELETE FROM mcp_servers WHERE id = $1", server_id))
        return status != "DELETE 0"

    # --- export / import (memory.portable) ----------------------------------------------------
    async def scan(self, kind: str, *, after: str | None = None, limit: int = 1000) -> list[Any]:
        table = _portable_table(kind)
        extra = f", {AGENT_BLOCK_IDS}" if kind == "agents" else ""
        rows = await self._fetch(f"SELECT {select_list(table)}{extra} FROM {table.name}"
                                 ' WHERE id > $1 ORDER BY id LIMIT $2', after or "", int(limit))
        if kind == "agents":
            return [agent_from_row(tuple(row)[:-1], row[-1], self.secret_box) for row in rows]
        convert = {"tools": tool_from_row, "blocks": block_from_row, "runs": run_from_row, "messages": message_from_row}
        return [convert[kind](tuple(row)) for row in rows]

    async def existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        rows = await self._fetch(f"SELECT id FROM {_portable_table(kind).name} WHERE id = ANY($1::text[])", list(ids))
        return {row[0] for row in rows}


def _portable_table(kind: str) -> Table:
    tables = {"tools": TOOLS, "blocks": BLOCKS, "agents": AGENTS, "runs": RUNS, "messages": MESSAGES}
    if kind not in PORTABLE_KINDS:
        raise ValueError(f"not a portable kind: {kind!r}")
    return tables[kind]
