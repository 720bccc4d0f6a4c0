"""MCP servers (Letta's `/v1/mcp-servers`): register a server, list its tools, register a tool of it as a memproxy tool.

Attaching follows Letta: a tool of an MCP server becomes a tool (`POST /v1/mcp-servers/{id}/tools/{tool_name}`,
answering Letta's Tool with tool_type "external_mcp"), then `PATCH /v1/agents/{id}/tools/attach/{tool_id}`
attaches it like any other. Tool names are one namespace (agents hold tools by name), so a name already taken
by another tool is refused with 409 when the MCP tool is registered, and can then never clash at attach time.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from memory.mcp_servers import SERVER_TYPES, McpServer
from memory.models import new_id, utcnow
from memory.store import Conflict, NotFound
from proxy.api.bodies import ENV_NAME_PATTERN, TOOL_NAME_PATTERN
from proxy.api.lookup import runtime, save_agent
from proxy.api.protocol import mask_secret, tool_json
from proxy.api.tool_rules import detached
from proxy.errors import APIError, not_found, unprocessable
from proxy.api.wire.mcp_servers import McpServerCreate, McpServerUpdate
from proxy.http import json_response
from proxy.limits import MAX_LIST_ITEMS, MAX_NAME_CHARS, MAX_TEXT_CHARS, check_text
from proxy.runtime import Runtime
from tools.mcp import McpUnavailable, mcp_tool_id

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}$")
_REMOTE_FIELDS = ("server_url", "auth_header", "auth_token", "custom_headers")
_STDIO_FIELDS = ("command", "args", "env")
_FIELDS = frozenset(("server_name", "type", "id", *_REMOTE_FIELDS, *_STDIO_FIELDS))
_MAX_URL_CHARS = 4096


def server_json(server: McpServer) -> dict[str, Any]:
    """Letta's StdioMCPServer / SSEMCPServer / StreamableHTTPMCPServer, every secret masked."""
    out: dict[str, Any] = {"id": server.id, "server_name": server.server_name, "type": server.type,
                           "mcp_server_type": server.type}
    if server.type == "stdio":
        out.update(command=server.command, args=list(server.args),
                   env={key: mask_secret(value) for key, value in server.env.items()} or None)
    else:
        out.update(server_url=server.server_url, auth_header=server.auth_header,
                   auth_token=mask_secret(server.auth_token) if server.auth_token else None,
                   custom_headers={k: mask_secret(v) for k, v in server.custom_headers.items()} or None)
    return out


def _string_map(body: dict[str, Any], name: str, key_pattern: re.Pattern[str], what: str) -> dict[str, str]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise unprocessable(f"{name!r} must be an object of strings", param=name)
    if len(value) > MAX_LIST_ITEMS:
        raise unprocessable(f"{name!r} has {len(value)} entries; the limit is {MAX_LIST_ITEMS}", param=name)
    for key, item in value.items():
        if not key_pattern.match(key):
            raise unprocessable(f"{name!r} has {key!r}, which is not a valid {what}", param=name)
        check_text(item, name)
        if "\r" in item or "\n" in item:
            raise unprocessable(f"{name!r} values cannot hold line breaks", param=name)
    return dict(value)


def _text(body: dict[str, Any], name: str, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise unprocessable(f"{name!r} must be a string", param=name)
    return check_text(value, name, max_chars)


def parse_server(body: dict[str, Any]) -> McpServer:
    """A new server from Letta's CreateStdioMCPServer / CreateSSEMCPServer / CreateStreamableHTTPMCPServer."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise unprocessable(f"unknown field {unknown[0]!r} for an MCP server", param=unknown[0])
    name = _text(body, "server_name", MAX_NAME_CHARS)
    if not name or not name.strip():
        raise unprocessable("'server_name' is required", param="server_name")
    kind = body.get("type")
    if kind is None:  # Letta infers it: a command is a local server, a URL a streamable HTTP one
        kind = "stdio" if body.get("command") is not None else "streamable_http"
    if kind not in SERVER_TYPES:
        raise unprocessable(f"'type' must be one of {', '.join(SERVER_TYPES)}", param="type")
    server = McpServer(id=new_id("mcp_server"), server_name=name, type=kind)
    wrong = [f for f in (_REMOTE_FIELDS if kind == "stdio" else _STDIO_FIELDS) if body.get(f) is not None]
    if wrong:
        raise unprocessable(f"{wrong[0]!r} does not apply to a {kind} server", param=wrong[0])
    if kind == "stdio":
        command = _text(body, "command", _MAX_URL_CHARS)
        if not command or not command.strip():
            raise unprocessable("'command' is required for a stdio server", param="command")
        args = body.get("args")
        if args is not None and not (isinstance(args, list) and all(isinstance(a, str) for a in args)):
            raise unprocessable("'args' must be a list of strings", param="args")
        if args is not None and len(args) > MAX_LIST_ITEMS:
            raise unprocessable(f"'args' has {len(args)} items; the limit is {MAX_LIST_ITEMS}", param="args")
        for arg in args or []:
            check_text(arg, "args", _MAX_URL_CHARS)
        return replace(server, command=command, args=list(args or []),
                       env=_string_map(body, "env", ENV_NAME_PATTERN, "variable name"))
    url = _text(body, "server_url", _MAX_URL_CHARS)
    if not url:
        raise unprocessable(f"'server_url' is required for a {kind} server", param="server_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise unprocessable("'server_url' must be an http:// or https:// URL", param="server_url")
    header = _text(body, "auth_header", 256)
    if header is not None and not _HEADER_NAME.match(header):
        raise unprocessable("'auth_header' must be an HTTP header name", param="auth_header")
    token = _text(body, "auth_token")
    if token is not None and ("\r" in token or "\n" in token):
        raise unprocessable("'auth_token' cannot hold line breaks", param="auth_token")
    return replace(server, server_url=url, auth_header=header, auth_token=token,
                   custom_headers=_string_map(body, "custom_headers", _HEADER_NAME, "header name"))


def _require_server(rt: Runtime, server_id: str) -> McpServer:
    server = rt.mcp.servers.get(server_id)
    if server is None:
        raise not_found("mcp server", server_id)
    return server


async def _server_tools(rt: Runtime, server: McpServer) -> list[dict[str, Any]]:
    """The server's tools, asked of it now; 502 when it cannot answer."""
    try:
        return await rt.mcp.list_tools(server)
    except McpUnavailable as exc:
        raise APIError(502, str(exc), code="mcp_server_unavailable") from None


async def create_mcp_server(request: Request, body: McpServerCreate) -> Response:
    rt = runtime(request)
    server = parse_server(body.fields())
    async with rt.tools.writing():
        return await _create(rt, server)


async def _create(rt: Runtime, server: McpServer) -> Response:
    if rt.mcp.by_name(server.server_name) is not None:
        raise APIError(409, f"an MCP server named {server.server_name!r} already exists", param="server_name",
                       code="conflict")
    try:
        await rt.store.create_mcp_server(server)
    except Conflict:
        raise APIError(409, f"an MCP server named {server.server_name!r} already exists", param="server_name",
                       code="conflict") from None
    rt.mcp.add(server)  # a stdio server is started now, and supervised from here on
    return json_response(server_json(server))


async def list_mcp_servers(request: Request) -> Response:
    rt = runtime(request)
    await rt.tools.current()
    return json_response([server_json(server) for server in rt.mcp.servers.values()])


async def get_mcp_server(request: Request) -> Response:
    rt = runtime(request)
    await rt.tools.current()
    return json_response(server_json(_require_server(rt, request.path_params["mcp_server_id"])))


def _unmasked(given: dict[str, Any], server: McpServer) -> dict[str, Any]:
    """A secret sent back as the API shows it (masked) keeps its stored value: a GET, edited, can be PATCHed."""
    out = dict(given)
    if server.auth_token and out.get("auth_token") == mask_secret(server.auth_token):
        out["auth_token"] = server.auth_token
    for name, stored in (("custom_headers", server.custom_headers), ("env", server.env)):
        values = out.get(name)
        if isinstance(values, dict):
            out[name] = {key: stored[key] if key in stored and value == mask_secret(stored[key]) else value
                         for key, value in values.items()}
    return out


async def update_mcp_server(request: Request, body: McpServerUpdate) -> Response:
    """Letta's Update Mcp Server: the given fields change (a new `type` replaces the whole connection); the
    server's registered tools keep their names and are reached through the new connection from now on."""
    rt = runtime(request)
    async with rt.tools.writing():
        return await _update(rt, request, body)


async def _update(rt: Runtime, request: Request, body: McpServerUpdate) -> Response:
    server = _require_server(rt, request.path_params["mcp_server_id"])
    given = body.fields()
    fields: dict[str, Any] = {"server_name": server.server_name, "type": server.type}
    if given.get("type") in (None, server.type):
        fields.update({name: getattr(server, name) or None for name in (
            _STDIO_FIELDS if server.type == "stdio" else _REMOTE_FIELDS)})
    fields.update({name: value for name, value in _unmasked(given, server).items() if value is not None})
    updated = replace(parse_server(fields), id=server.id, tools=server.tools, created_at=server.created_at)
    other = rt.mcp.by_name(updated.server_name)
    if other is not None and other.id != server.id:
        raise APIError(409, f"an MCP server named {updated.server_name!r} already exists", param="server_name",
                       code="conflict")
    try:
        await rt.store.update_mcp_server(updated)
    except NotFound:
        raise not_found("mcp server", server.id) from None
    await rt.mcp.remove(server.id)  # the old connection closes (a stdio process stops); the new one starts
    rt.mcp.add(updated)
    for spec in updated.tools:
        rt.registry.add(rt.mcp.server_tool(updated, spec))
    return json_response(server_json(updated))


async def delete_mcp_server(request: Request) -> Response:
    rt = runtime(request)
    async with rt.tools.writing():
        return await _delete(rt, request)


async def _delete(rt: Runtime, request: Request) -> Response:
    server = _require_server(rt, request.path_params["mcp_server_id"])
    names = {spec["name"] for spec in server.tools}
    # Detached from every agent first: an agent never holds a name that no longer exists.
    if names:
        for agent in await rt.store.list_agents(limit=None):
            if names & set(agent.tools):
                live = await rt.memory.get(agent.id)
                if live is not None:
                    await save_agent(rt.memory, replace(live.agent, tools=[n for n in live.agent.tools
                                                                           if n not in names],
                                                        tool_rules=detached(live.agent, *names)))
    await rt.store.delete_mcp_server(server.id)
    await rt.mcp.remove(server.id)  # closes the session; a stdio server's process is stopped
    return Response(status_code=204)


async def list_mcp_server_tools(request: Request) -> Response:
    rt = runtime(request)
    await rt.tools.current()
    server = _require_server(rt, request.path_params["mcp_server_id"])
    specs = await _server_tools(rt, server)
    return json_response([tool_json(rt.mcp.server_tool(server, spec)) for spec in specs])


async def get_mcp_server_tool(request: Request) -> Response:
    """One tool of the server by its id (Letta's Get Mcp Tool), asked of the server now."""
    rt = runtime(request)
    await rt.tools.current()
    server = _require_server(rt, request.path_params["mcp_server_id"])
    tool_id = request.path_params["tool_id"]
    specs = await _server_tools(rt, server)
    spec = next((s for s in specs if mcp_tool_id(server.id, s["name"]) == tool_id), None)
    if spec is None:
        raise not_found(f"tool of MCP server {server.server_name!r}", tool_id)
    return json_response(tool_json(rt.mcp.server_tool(server, spec)))


async def register_mcp_tool(request: Request) -> Response:
    """Make one tool of the server a memproxy tool (Letta's add_mcp_tool), ready to attach to agents."""
    rt = runtime(request)
    await rt.tools.current()
    server = _require_server(rt, request.path_params["mcp_server_id"])
    name = request.path_params["tool_name"]
    specs = await _server_tools(rt, server)  # asked outside the tools lock: a slow server holds up no one
    spec = next((s for s in specs if s["name"] == name), None)
    if spec is None:
        raise not_found(f"tool of MCP server {server.server_name!r}", name)
    if not TOOL_NAME_PATTERN.match(name):
        raise APIError(400, f"the MCP tool name {name!r} is not a valid OpenAI function name "
                       "(letters, digits, _ and -, at most 64)", param="tool_name", code="invalid_tool")
    async with rt.tools.writing():
        return await _register(rt, server.id, spec)


async def _register(rt: Runtime, server_id: str, spec: dict[str, Any]) -> Response:
    """Under the tools lock: the server's tools as now stored, plus this one (a concurrent one is not lost)."""
    server = _require_server(rt, server_id)  # deleted meanwhile: 404
    name = spec["name"]
    taken = rt.registry.get(name)
    if taken is not None and taken.id != mcp_tool_id(server.id, name):
        raise APIError(409, f"a tool named {name!r} already exists ({taken.kind}); MCP tools keep the names "
                       "their server gives them, so this one cannot be registered", param="tool_name",
                       code="conflict")
    updated = replace(server, tools=[*(s for s in server.tools if s["name"] != name), spec], updated_at=utcnow())
    try:
        await rt.store.update_mcp_server(updated)
    except NotFound:
        raise not_found("mcp server", server.id) from None
    rt.mcp.servers[server.id] = updated
    tool = rt.mcp.server_tool(updated, spec)
    rt.registry.add(tool)
    return json_response(tool_json(tool))
