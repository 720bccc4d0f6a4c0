"""MCP servers as a source of server tools: their records, pooled connections, and the tools registered from them.

An MCP tool is a `ServerTool` (kind "mcp") in the one registry, under the name its server gives it. It is
registered explicitly (`POST /v1/mcp-servers/{id}/tools/{tool_name}`), which stores its schema on the server
record so it is back in the registry after a restart without asking the server, then attached like any tool.
A call goes over the server's pooled session with a timeout; a failure of any kind (server down, slow,
`isError`) is a `ToolError` the model reads.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from memory.mcp_servers import McpServer
from memory.store import Store
from tools.registry import ServerTool, ToolContext, ToolError, ToolRegistry

if TYPE_CHECKING:  # the MCP SDK costs about 1 s to import: loaded with the first server, not at start-up
    import mcp_types

    from tools.mcp_client import McpConnection

log = logging.getLogger("memproxy")
_MCP_NAMESPACE = uuid.UUID("1b7c6e0a-52a4-4f0c-8d7e-6d63702d746f")
RESULT_CHAR_LIMIT = 50000


class McpUnavailable(Exception):
    """The server could not be reached, or the session broke; the message never holds a secret."""


def mcp_tool_id(server_id: str, name: str) -> str:
    """A stable id per (server, tool name): listing and registering name the same tool by the same id."""
    return f"tool-{uuid.uuid5(_MCP_NAMESPACE, server_id + '/' + name)}"


def tool_spec(tool: mcp_types.Tool) -> dict[str, Any]:
    """What memproxy keeps of a tool the server lists."""
    schema = dict(tool.input_schema or {})
    schema.setdefault("type", "object")
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
    return {"name": tool.name, "description": tool.description or "", "input_schema": schema}


def result_text(result: mcp_types.CallToolResult, limit: int = RESULT_CHAR_LIMIT) -> str:
    """The text the model reads: text blocks, placeholders for images, audio and resources, and the structured
    content as JSON when no text block carries it."""
    import mcp_types  # loaded already: the result came through the SDK

    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.ImageContent):
            parts.append(f"[image: {block.mime_type}, {len(block.data) * 3 // 4} bytes, not shown]")
        elif isinstance(block, mcp_types.AudioContent):
            parts.append(f"[audio: {block.mime_type}, {len(block.data) * 3 // 4} bytes, not shown]")
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource: {resource.uri}]")
        elif isinstance(block, mcp_types.ResourceLink):
            parts.append(f"[resource link: {block.uri}]")
        else:
            parts.append(f"[{getattr(block, 'type', 'content')} block, not shown]")
    if result.structured_content is not None and not any(isinstance(b, mcp_types.TextContent)
                                                         for b in result.content):
        parts.append(orjson.dumps(result.structured_content).decode())
    text = "\n".join(parts) if parts else "(the tool returned no content)"
    if len(text) > limit:
        text = text[:limit] + f"\n[... truncated: the result was {len(text)} characters, the limit is {limit}]"
    return text


class McpServers:
    """Every MCP server of this memproxy, its connection, and the ServerTools registered from it."""

    def __init__(self, store: Store, registry: ToolRegistry, *, call_timeout: float, connect_timeout: float) -> None:
        self.store = store
        self.registry = registry
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.servers: dict[str, McpServer] = {}
        self.connections: dict[str, McpConnection] = {}

    async def load(self) -> None:
        """At start: every stored server (stdio ones started) and its registered tools in the registry."""
        for server in await self.store.list_mcp_servers():
            self.add(server)
            for spec in server.tools:
                taken = self.registry.get(spec["name"])
                if taken is not None and taken.id != mcp_tool_id(server.id, spec["name"]):
                    log.warning("MCP tool %s of server %s is shadowed by another tool and not loaded",
                                spec["name"], server.server_name)
                    continue
                self.registry.add(self.server_tool(server, spec))

    def add(self, server: McpServer) -> None:
        from tools.mcp_client import McpConnection

        self.servers[server.id] = server
        connection = McpConnection(server, connect_timeout=self.connect_timeout)
        self.connections[server.id] = connection
        if connection.supervised:
            connection.start()

    def by_name(self, name: str) -> McpServer | None:
        return next((s for s in self.servers.values() if s.server_name == name), None)

    async def remove(self, server_id: str) -> list[str]:
        """Forget the server: stop its connection (and process); returns the names of its registered tools."""
        server = self.servers.pop(server_id, None)
        connection = self.connections.pop(server_id, None)
        if connection is not None:
            await connection.close()
        names = [spec["name"] for spec in server.tools] if server is not None else []
        for name in names:
            tool = self.registry.get(name)
            if tool is not None and tool.kind == "mcp" and tool.id == mcp_tool_id(server_id, name):
                self.registry.remove(name)
        return names

    async def list_tools(self, server: McpServer) -> list[dict[str, Any]]:
        """The server's tools, asked of it now (McpUnavailable when it cannot answer)."""
        tools = await self.connections[server.id].list_tools(self.call_timeout)
        return [tool_spec(tool) for tool in tools]

    def server_tool(self, server: McpServer, spec: dict[str, Any]) -> ServerTool:
        server_id, name = server.id, spec["name"]

        async def run(ctx: ToolContext, args: dict[str, Any]) -> str:
            return await self.call(server_id, name, args)

        return ServerTool(name=name, description=spec.get("description") or "", parameters=spec["input_schema"],
                          run=run, id=mcp_tool_id(server_id, name), kind="mcp",
                          record={"server_id": server_id, "server_name": server.server_name})

    async def call(self, server_id: str, name: str, args: dict[str, Any]) -> str:
        connection = self.connections.get(server_id)
        if connection is None:
            raise ToolError(f"the MCP server of `{name}` was removed")
        try:
            result = await connection.call_tool(name, args, self.call_timeout)
        except McpUnavailable as exc:
            raise ToolError(f"the MCP tool `{name}` could not run: {exc}") from None
        text = result_text(result)
        if result.is_error:
            raise ToolError(f"the MCP tool `{name}` reported an error: {text}")
        return text

    async def close(self) -> None:
        for connection in list(self.connections.values()):
            await connection.close()
        self.connections.clear()
