"""MCP servers (Letta's `/v1/mcp-servers`): the create body and the server as answered (secrets masked)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from proxy.api.operations import RequestBody
from proxy.errors import unprocessable

ServerType = Literal["stdio", "sse", "streamable_http"]


class McpConnectionFields(RequestBody):
    """A server's connection fields: a stdio server's, or a remote one's."""

    server_url: str | None = None
    auth_header: str | None = None
    auth_token: str | None = None
    custom_headers: dict[str, Any] | None = None
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, Any] | None = None


class McpServerConfig(McpConnectionFields):
    """The connection as Letta's SDKs (1.x) send it: `{"server_name", "config": {..., "mcp_server_type"}}`."""

    mcp_server_type: ServerType | None = None


class McpServerCreate(McpConnectionFields):
    """Letta's CreateStdioMCPServer / CreateSSEMCPServer / CreateStreamableHTTPMCPServer in one body: flat, as
    Letta's API reference shows it, or with the connection under `config`, as Letta's SDKs send it.

    The types are checked here; which fields apply to which `type`, the URL, header names and the bounds are
    `proxy.api.mcp_servers.parse_server`'s rules, which also refuse undeclared fields (422 naming them)."""

    server_name: str
    type: ServerType | None = None
    id: str | None = None
    config: McpServerConfig | None = None
    model_config = ConfigDict(json_schema_extra={
        "additionalProperties": False,
        "examples": [{"server_name": "remote", "type": "streamable_http", "server_url": "http://127.0.0.1:9/mcp"}]})

    def refuse_unsupported(self, where: str = "") -> None:
        return None  # parse_server names an undeclared field with 422, as it always has

    def fields(self) -> dict[str, Any]:
        """Every field sent, declared or not, `config` flattened into the body: what parse_server reads."""
        out = {**self.given(), **(self.model_extra or {})}
        config = out.pop("config", None)
        if self.config is not None:
            nested = {**(config or {}), **(self.config.model_extra or {})}
            if "mcp_server_type" in nested:
                nested["type"] = nested.pop("mcp_server_type")
            twice = sorted(name for name, value in nested.items() if value is not None and out.get(name) is not None)
            if twice:
                raise unprocessable(f"{twice[0]!r} is given both in the body and in 'config'", param=twice[0])
            out.update({name: value for name, value in nested.items() if value is not None})
        return out


class McpServerUpdate(McpServerCreate):
    """Letta's UpdateStdioMCPServer / UpdateSSEMCPServer / UpdateStreamableHTTPMCPServer: the fields to change."""

    server_name: str | None = None  # type: ignore[assignment]
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False, "examples": [
        {"config": {"mcp_server_type": "streamable_http", "server_url": "http://127.0.0.1:9/mcp"}}]})


class McpServer(BaseModel):
    """Letta's StdioMCPServer / SSEMCPServer / StreamableHTTPMCPServer: stdio fields or remote ones."""

    model_config = ConfigDict(extra="forbid")
    id: str
    server_name: str
    type: ServerType
    mcp_server_type: ServerType = Field(description="the same as `type`: the name Letta's SDKs (1.x) read")
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None
    server_url: str | None = None
    auth_header: str | None = None
    auth_token: str | None = None
    custom_headers: dict[str, str] | None = None
