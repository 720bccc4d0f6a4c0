"""Agents: create, list, retrieve, modify, delete (Letta's `/v1/agents`)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from memory.agents import LiveAgent
from memory.models import Agent, Block, Changes, new_id
from proxy.api.bodies import AgentFields, agent_fields, get_bool, initial_messages, memory_blocks, unique_labels
from proxy.api.lookup import conflict, is_id, page, require_agent, require_block, runtime, save_agent
from proxy.api.protocol import agent_json, mask_secret
from proxy.api.tool_rules import rules_for
from proxy.api.wire.agents import AgentCreate, AgentListQuery, AgentUpdate
from proxy.errors import APIError, not_found
from proxy.http import json_response
from proxy.runtime import Runtime
from tools.registry import ARCHIVAL_TOOLS, BASE_TOOLS, ToolRegistry

DEFAULT_SYSTEM = (
    "You are a helpful assistant with a persistent, self-editing memory. The memory blocks below hold "
    "what you know about yourself and the person you are talking with; they stay in view across every "
    "conversation. When you learn something worth keeping, update the right block with your memory "
    "tools, and search your conversation history when the user refers to something earlier. "
    "Answer naturally and concisely; never mention these instructions or your tools unless asked."
)


def public_endpoint(rt: Runtime) -> str | None:
    """The upstream base URL without credentials or query, safe to show in `llm_config`."""
    if not rt.upstream.base_url:
        return None
    parts = urlsplit(rt.upstream.base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def state(rt: Runtime, live: LiveAgent) -> dict[str, Any]:
    return agent_json(live, public_endpoint(rt), rt.registry)


def unknown_tool(what: str, param: str) -> APIError:
    return APIError(400, f"no tool {what} exists; create it with POST /v1/tools/ first", param=param,
                    code="tool_not_found")


def resolve_tools(fields: AgentFields, registry: ToolRegistry) -> list[str] | None:
    """The tool names a body asks for (`tools` by name, `tool_ids` by id), or None when it names none.

    Every one must exist in the registry: an agent offered a tool nobody can run is a 400, not a surprise later.
    """
    if fields.tools is None and fields.tool_ids is None:
        return None
    names = list(fields.tools or [])
    for name in names:
        if name not in registry:
            raise unknown_tool(f"named {name!r}", "tools")
    for ident in fields.tool_ids or []:
        tool = registry.by_id(ident)
        if tool is None:
            raise unknown_tool(f"with id {ident!r}", "tool_ids")
        names.append(tool.name)
    return list(dict.fromkeys(names))


def merged_env(given: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """The new variable set; a value sent back exactly as the API masked it keeps the stored secret."""
    return {key: current[key] if key in current and value == mask_secret(current[key]) else value
            for key, value in given.items()}


async def attached_blocks(rt: Runtime, block_ids: list[str]) -> list[Block]:
    return [await require_block(rt.memory, block_id) for block_id in block_ids]


async def create_agent(request: Request, body: AgentCreate) -> Response:
    rt = runtime(request)
    return await _create(rt, body.given())


async def _create(rt: Runtime, body: dict[str, Any]) -> Response:
    fields = agent_fields(body)
    blocks = memory_blocks(body)
    opening = initial_messages(body)
    include_base = get_bool(body, "include_base_tools")
    tools = resolve_tools(fields, rt.registry) or []
    if include_base is not False:
        tools = list(dict.fromkeys([*BASE_TOOLS, *tools]))
    attached = await attached_blocks(rt, fields.block_ids or [])
    unique_labels(blocks + attached)
    values = dict(fields.values)
    values.setdefault("name", f"agent-{uuid.uuid4().hex[:8]}")
    values.setdefault("system", DEFAULT_SYSTEM)
    values.setdefault("model", rt.settings.default_model)
    if "embedding" not in values:
        # An explicit null means "no embeddings" on create; only an absent field takes the default.
        values["embedding"] = None if "embedding" in body else rt.settings.embedding_model
    if include_base is not False and values.get("embedding"):
        # Archival search is only as good as its vectors: agents with an embedding model get the tools by default.
        tools = list(dict.fromkeys([*tools, *ARCHIVAL_TOOLS]))
    rules = rules_for(body, tools, None, rt.registry)
    agent = Agent(id=new_id("agent"), tools=tools, llm_params=fields.llm_params, tool_env=fields.tool_env or {},
                  tool_rules=rules,
                  block_ids=[b.id for b in blocks] + [b.id for b in attached], **values)
    live = await rt.memory.create_agent(agent, blocks)
    if opening:
        batch = [rt.memory.new_message(live, role, text) for role, text in opening]
        on_messages = rt.turns.env.on_messages
        await rt.memory.commit_turn(live.id, Changes(messages=batch, insert_only=True),
                                    after=(lambda: on_messages(batch)) if on_messages else None)
    return json_response(state(rt, live))


async def list_agents(request: Request, query: AgentListQuery) -> Response:
    rt = runtime(request)
    wanted = page(request, "agent", 50)
    agents = wanted.arrange(await rt.store.list_agents(
        name=query.name,
        tags=query.tags,
        match_all_tags=bool(query.match_all_tags),
        before=wanted.before,
        after=wanted.after,
        limit=wanted.limit,
        ascending=wanted.ascending,
    ))
    out: list[dict[str, Any]] = []
    for record in agents:
        # Through the cache, so the listing shows exactly what a retrieve would.
        live = await rt.memory.get(record.id)
        if live is not None:
            out.append(state(rt, live))
    return json_response(out)


async def get_agent(request: Request) -> Response:
    live = await require_agent(request)
    return json_response(state(runtime(request), live))


async def modify_agent(request: Request, body: AgentUpdate) -> Response:
    rt = runtime(request)
    live = await require_agent(request)
    given = body.given()
    fields = agent_fields(given)
    changes: dict[str, Any] = dict(fields.values)
    if fields.llm_params:
        changes["llm_params"] = {**live.agent.llm_params, **fields.llm_params}
    tools = resolve_tools(fields, rt.registry)
    if tools is not None:
        changes["tools"] = tools
    if tools is not None or given.get("tool_rules") is not None:
        changes["tool_rules"] = rules_for(given, changes.get("tools", live.agent.tools), live.agent, rt.registry)
    if fields.tool_env is not None:
        changes["tool_env"] = merged_env(fields.tool_env, live.agent.tool_env)
    if fields.block_ids is not None:
        blocks = await attached_blocks(rt, fields.block_ids)
        labels = [b.label for b in blocks]
        duplicate = next((label for label in labels if labels.count(label) > 1), None)
        if duplicate is not None:
            raise conflict(f"two of the blocks in 'block_ids' share the label {duplicate!r}", param="block_ids")
        changes["block_ids"] = [b.id for b in blocks]
    live = await save_agent(rt.memory, replace(live.agent, **changes))
    return json_response(state(rt, live))


async def delete_agent(request: Request) -> Response:
    agent_id: str = request.path_params["agent_id"]
    rt = runtime(request)
    if not is_id("agent", agent_id) or not await rt.memory.delete_agent(agent_id):
        raise not_found("agent", agent_id)
    rt.turns.recent.forget_agent(agent_id)  # its recorded turns can never be replayed now
    return json_response({"id": agent_id, "deleted": True, "message": f"Agent id={agent_id} successfully deleted"})
