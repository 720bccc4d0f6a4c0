"""MCP server records (Letta's `/v1/mcp-servers`) and their row form, shared by both stores.

A row is (id, server_name, type, config, tools, created_at, updated_at): `config` holds the transport's fields
(URL or command, args, env, auth header and token, custom headers) as JSON, `tools` the tools of the server
registered as memproxy tools ({name, description, input_schema} each). Secrets (env values, the auth token,
custom header values) are stored as given, like agents' tool variables: the data dir and the database are
the trust boundary, and the API never returns them in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from memory.models import utcnow
from memory.secretbox import SecretBox, seal, unseal_text

SERVER_TYPES = ("streamable_http", "sse", "stdio")
_CONFIG_FIELDS = ("server_url", "command", "args", "env", "auth_header", "auth_token", "custom_headers")

McpRow = tuple[str, str, str, str, str, datetime, datetime]


@dataclass
class McpServer:
    id: str
    server_name: str
    type: str  # streamable_http | sse | stdio
    server_url: str | None = None
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    auth_header: str | None = None
    auth_token: str | None = None
    custom_headers: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)  # registered: {name, description, input_schema}
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def headers(self) -> dict[str, str]:
        """The HTTP headers every request to a remote server carries (secrets included: never log them)."""
        headers = dict(self.custom_headers)
        if self.auth_token:
            headers[self.auth_header or "Authorization"] = self.auth_token
        return headers

    def secrets(self) -> list[str]:
        """Every secret value of the record, for scrubbing text that might echo one."""
        values = [self.auth_token or "", *self.custom_headers.values(), *self.env.values()]
        return [v for v in values if len(v) >= 4]


def mcp_row(server: McpServer, box: SecretBox | None = None) -> McpRow:
    """The row; `config` (with the token, headers and env) encrypted when the store has a secret box."""
    config = {name: getattr(server, name) for name in _CONFIG_FIELDS}
    return (server.id, server.server_name, server.type, seal(config, box),
            orjson.dumps(server.tools).decode(), server.created_at, server.updated_at)


def mcp_from_row(row: tuple[Any, ...], box: SecretBox | None = None) -> McpServer:
    id_, name, type_, config, tools, created_at, updated_at = row
    values = orjson.loads(unseal_text(config, box) or "{}")
    return McpServer(id=id_, server_name=name, type=type_, server_url=values.get("server_url"),
                     command=values.get("command"), args=values.get("args") or [], env=values.get("env") or {},
                     auth_header=values.get("auth_header"), auth_token=values.get("auth_token"),
                     custom_headers=values.get("custom_headers") or {}, tools=orjson.loads(tools),
                     created_at=_utc(created_at), updated_at=_utc(updated_at))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


MCP_COLUMNS = "id, server_name, type, config, tools, created_at, updated_at"
# DuckDB reads TIMESTAMPTZ as naive UTC through timezone() (reading it directly needs pytz).
DUCKDB_MCP_SELECT = ("SELECT id, server_name, type, config, tools, timezone('UTC', created_at), "
                     "timezone('UTC', updated_at) FROM mcp_servers ORDER BY created_at, id")
