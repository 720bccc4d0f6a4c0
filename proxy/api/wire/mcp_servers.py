"""MCP servers (Letta's `/v1/mcp-servers`): the create body and the server as answered (secrets masked)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from proxy.api.operations import RequestBody

ServerType = Literal["stdio", "sse", "streamable_http"]


class McpServerCreate(RequestBody):
    """Letta's CreateStdioMCPServer / CreateSSEMCPServer / CreateStreamableHTTPMCPServer in one body.

    The types are checked here; which fields apply to which `type`, the URL, header names and the bounds are
    `proxy.api.mcp_servers.parse_server`'s rules, which also refuse undeclared fields (422 naming them)."""

    server_name: str
    type: ServerType | None = None
    id: str | None = None
    server_url: str | None = None
    auth_header: str | None = None
    auth_token: str | None = None
    custom_headers: dict[str, Any] | None = None
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, Any] | None = None
    model_config = ConfigDict(json_schema_extra={
        "additionalProperties": False,
        "examples": [{"server_name": "remote", "type": "streamable_http", "server_url": "http://127.0.0.1:9/mcp"}]})

    def refuse_unsupported(self, where: str = "") -> None:
        return None  # parse_server names an undeclared field with 422, as it always has

    def fields(self) -> dict[str, Any]:
        """Every field sent, declared or not: what parse_server reads."""
        return {**self.given(), **(self.model_extra or {})}


class McpServer(BaseModel):
    """Letta's StdioMCPServer / SSEMCPServer / StreamableHTTPMCPServer: stdio fields or remote ones."""

    model_config = ConfigDict(extra="forbid")
    id: str
    server_name: str
    type: ServerType
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    server_url: str | None = None
    auth_header: str | None = None
    auth_token: str | None = None
    custom_headers: dict[str, str] | None = None
