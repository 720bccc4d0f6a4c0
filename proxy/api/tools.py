"""Tools (Letta's `/v1/tools` and an agent's `/tools`): custom Python tools created, changed, attached."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from memory.models import Tool, new_id, utcnow
from memory.store import Conflict, NotFound
from proxy.api.agents import state
from proxy.api.lookup import page_of, require_agent, runtime, save_agent
from proxy.api.protocol import tool_json
from proxy.api.tool_rules import attached, detached
from proxy.api.wire.common import PageQuery
from proxy.api.wire.tools import ToolCreate, ToolListQuery, ToolUpdate
from proxy.errors import APIError, not_found
from proxy.http import json_response
from proxy.runtime import Runtime
from tools.custom import SourceError, checked_schema, custom_tool
from tools.registry import ServerTool

def _require_tool(rt: Runtime, tool_id: str) -> ServerTool:
    tool = rt.registry.by_id(tool_id)
    if tool is None:
        raise not_found("tool", tool_id)
    return tool


def _custom(tool: ServerTool) -> Tool:
    if tool.kind == "mcp":
        server = (tool.record or {}).get("server_name") if isinstance(tool.record, dict) else None
        raise APIError(400, f"{tool.name!r} belongs to the MCP server {server!r}: its server defines it; delete the "
                       "server (DELETE /v1/mcp-servers/{id}) to remove its tools", code="mcp_tool")
    if tool.kind != "custom":
        raise APIError(400, f"{tool.name!r} is a built-in tool and cannot be changed or deleted",
                       code="builtin_tool")
    return tool.record


def _fields(body: ToolUpdate) -> dict[str, Any]:
    """The fields a body sets (null = not given); `source_type` is python whenever it is given."""
    return {name: value for name, value in body.given().items() if value is not None and name != "source_type"}


def _schema(source: str, given: dict[str, Any] | None, description: str | None) -> dict[str, Any]:
    try:
        schema = checked_schema(source, given)
    except SourceError as exc:
        raise APIError(400, str(exc), param="json_schema" if given else "source_code", code="invalid_tool") from None
    if description is not None and not (given and given.get("description")):
        schema["description"] = description
    return schema


async def create_tool(request: Request, body: ToolCreate) -> Response:
    rt = runtime(request)
    fields = _fields(body)
    schema = _schema(fields["source_code"], fields.get("json_schema"), fields.get("description"))
    async with rt.tools.writing():
        if schema["name"] in rt.registry:
            raise APIError(409, f"a tool named {schema['name']!r} already exists", param="source_code",
                           code="conflict")
        return await _create(rt, fields, schema)


async def upsert_tool(request: Request, body: ToolCreate) -> Response:
    """Letta's upsert: the custom tool of the function's name is changed, or created when there is none."""
    rt = runtime(request)
    fields = _fields(body)
    schema = _schema(fields["source_code"], fields.get("json_schema"), fields.get("description"))
    async with rt.tools.writing():
        existing = rt.registry.get(schema["name"])
        if existing is None:
            return await _create(rt, fields, schema)
        return await _modify(rt, _custom(existing), fields)


async def _create(rt: Runtime, fields: dict[str, Any], schema: dict[str, Any]) -> Response:
    name = schema["name"]
    record = Tool(id=new_id("tool"), name=name, source_code=fields["source_code"], json_schema=schema,
                  description=schema["description"], tags=list(dict.fromkeys(fields.get("tags", []))),
                  return_char_limit=fields.get("return_char_limit", 50000), metadata=fields.get("metadata", {}),
                  default_requires_approval=fields.get("default_requires_approval", False))
    try:
        await rt.store.create_tool(record)
    except Conflict:
        raise APIError(409, f"a tool named {name!r} already exists", param="source_code", code="conflict") from None
    tool = custom_tool(record, rt.sandbox)
    rt.registry.add(tool)
    return json_response(tool_json(tool))


async def list_tools(request: Request, query: ToolListQuery) -> Response:
    rt = runtime(request)
    await rt.tools.current()
    name = query.name
    tools = [t for t in rt.registry.tools() if name is None or t.name == name]
    return json_response([tool_json(t) for t in page_of(request, tools, "tool", lambda t: t.id, default_limit=50)])


async def get_tool(request: Request) -> Response:
    rt = runtime(request)
    await rt.tools.current()
    return json_response(tool_json(_require_tool(rt, request.path_params["tool_id"])))


async def modify_tool(request: Request, body: ToolUpdate) -> Response:
    rt = runtime(request)
    async with rt.tools.writing():
        return await _modify(rt, _custom(_require_tool(rt, request.path_params["tool_id"])), _fields(body))


async def _modify(rt: Runtime, record: Tool, fields: dict[str, Any]) -> Response:
    source = fields.get("source_code", record.source_code)
    given = fields.get("json_schema")
    if given is None and "source_code" not in fields:
        # A description or tag change keeps the schema it had; a new description replaces the old one.
        given = {k: v for k, v in record.json_schema.items() if k != "description" or "description" not in fields}
    schema = _schema(source, given, fields.get("description"))
    if schema["name"] != record.name:
        raise APIError(400, f"a tool's name cannot change (it is {record.name!r}); create a new tool instead",
                       param="source_code", code="invalid_tool")
    updated = replace(record, source_code=source, json_schema=schema, description=schema["description"],
                      tags=list(dict.fromkeys(fields.get("tags", record.tags))),
                      return_char_limit=fields.get("return_char_limit", record.return_char_limit),
                      metadata=fields.get("metadata", record.metadata), updated_at=utcnow(),
                      default_requires_approval=fields.get("default_requires_approval",
                                                           record.default_requires_approval))
    try:
        await rt.store.update_tool(updated)
    except NotFound:
        raise not_found("tool", record.id) from None
    tool = custom_tool(updated, rt.sandbox)
    rt.registry.add(tool)
    return json_response(tool_json(tool))


async def delete_tool(request: Request) -> Response:
    rt = runtime(request)
    async with rt.tools.writing():
        return await _delete(rt, request)


async def _delete(rt: Runtime, request: Request) -> Response:
    record = _custom(_require_tool(rt, request.path_params["tool_id"]))
    # Detached from every agent first: an agent never holds a name that no longer exists.
    for agent in await rt.store.list_agents(limit=None):
        if record.name in agent.tools:
            live = await rt.memory.get(agent.id)
            if live is not None:
                await save_agent(rt.memory, replace(live.agent, tools=[n for n in live.agent.tools
                                                                       if n != record.name],
                                                    tool_rules=detached(live.agent, record.name)))
    await rt.store.delete_tool(record.id)
    rt.registry.remove(record.name)
    return json_response({"id": record.id, "deleted": True, "message": f"Tool id={record.id} successfully deleted"})


async def list_agent_tools(request: Request, query: PageQuery) -> Response:
    rt = runtime(request)
    await rt.tools.current()
    live = await require_agent(request)
    tools = [tool_json(rt.registry.get(name), name) for name in live.agent.tools]
    return json_response(page_of(request, tools, "tool", lambda t: t["id"]))


async def attach_tool(request: Request) -> Response:
    rt = runtime(request)
    await rt.tools.current()
    live = await require_agent(request)
    tool = _require_tool(rt, request.path_params["tool_id"])
    if tool.name not in live.agent.tools:
        live = await save_agent(rt.memory, replace(live.agent, tools=[*live.agent.tools, tool.name],
                                                   tool_rules=attached(live.agent, tool.name, rt.registry)))
    return json_response(state(rt, live))


async def detach_tool(request: Request) -> Response:
    rt = runtime(request)
    await rt.tools.current()
    live = await require_agent(request)
    tool = _require_tool(rt, request.path_params["tool_id"])
    if tool.name in live.agent.tools:
        live = await save_agent(rt.memory, replace(live.agent, tools=[n for n in live.agent.tools if n != tool.name],
                                                   tool_rules=detached(live.agent, tool.name)))
    return json_response(state(rt, live))
