"""The MCP server the tool-step suite measures: one cheap tool over stdio, started by memproxy itself."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("memproxy-bench", log_level="CRITICAL")


@server.tool()
def city_code(city: str) -> str:
    """A three-letter code for a city."""
    return city[:3].upper()


if __name__ == "__main__":
    server.run("stdio")
