"""Custom tools, MCP servers and the export/import scans of `DuckDBStore`: the tables besides agents and messages."""

from __future__ import annotations

from typing import Any

import duckdb

from memory import duckdb_portable
from memory.duckdb_connection import DuckDBConnection, scalar
from memory.duckdb_rows import TOOLS, tool_from_row, tool_row
from memory.mcp_servers import DUCKDB_MCP_SELECT, MCP_COLUMNS, McpServer, mcp_from_row, mcp_row
from memory.models import Tool
from memory.store import NotFound


class DuckDBCatalog(DuckDBConnection):
    """The tool and MCP server catalogue, and whole-table scans for memory.portable."""

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
            if scalar(con, TOOLS.update_by_id_sql, [*values[1:], values[0]]) == 0:
                raise NotFound("tool", tool.id)

        await self._run(work)

    async def delete_tool(self, tool_id: str) -> bool:
        return await self._run(lambda con: scalar(con, "DELETE FROM tools WHERE id = ?", [tool_id]) > 0)

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
            if scalar(con, sql, [*values, id_]) == 0:
                raise NotFound("mcp server", id_)

        await self._run(work)

    async def delete_mcp_server(self, server_id: str) -> bool:
        return await self._run(lambda con: scalar(con, "DELETE FROM mcp_servers WHERE id = ?", [server_id]) > 0)

    # --- export / import (memory.portable) ----------------------------------------------------
    async def scan(self, kind: str, *, after: str | None = None, limit: int = 1000) -> list[Any]:
        return await self._run(lambda con: duckdb_portable.scan(con, kind, after, limit, self.secret_box))

    async def existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        return await self._run(lambda con: duckdb_portable.existing_ids(con, kind, list(ids)))
