"""Letta agent files over HTTP: `GET /v1/agents/{id}/export` and `POST /v1/agents/import` (see memory.portable).

Import reads the whole file and checks every agent, block, tool and message (with the management API's
own field validation) before it writes anything, so a bad file is a 4xx naming the field
(`agents[0].tool_rules[1].type`) and leaves nothing behind. Agents get new ids; agent names may repeat,
as in Letta (`append_copy_suffix` and `name` / `override_name` rename). A custom tool whose name exists
is reused when its source is the same, and overwritten otherwise unless `override_existing_tools` is false
(Letta's rule; then 409). Letta exports secrets as null: give their values with `secrets` / `env_vars_json`.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from memory.models import Agent, Block, Changes, Tool, new_id, utcnow
from memory.portable.agent_file import AgentFileError, AgentPlan, ToolSpec, to_agent_file
from memory.portable.agent_file_read import AgentFile, read_agent_file
from proxy.api.agents import DEFAULT_SYSTEM
from proxy.api.bodies import AGENT_FIELDS, agent_fields, new_block, refuse_unsupported, unique_labels
from proxy.api.lookup import require_agent, runtime
from proxy.api.tool_rules import imported_rules, rules_for
from proxy.errors import APIError
from proxy.http import parse_json_object, query_bool, read_body
from proxy.runtime import Runtime
from tools.custom import SourceError, checked_schema, custom_tool

_FORM_FIELDS = frozenset({"file", "append_copy_suffix", "override_name", "name", "override_existing_tools",
                          "strip_messages", "env_vars_json", "secrets", "model", "override_model_handle",
                          "embedding", "override_embedding_handle", "project_id"})


async def export_agent(request: Request) -> Response:
    rt = runtime(request)
    live = await require_agent(request)
    if query_bool(request, "use_legacy_format", False):
        raise APIError(400, "memproxy exports Letta's v2 agent file only", param="use_legacy_format",
                       code="unsupported_parameter")
    if request.query_params.get("conversation_id"):
        raise APIError(400, "memproxy agents have one conversation; leave conversation_id unset",
                       param="conversation_id", code="unsupported_parameter")
    with_messages = not query_bool(request, "scrub_messages", False)
    await rt.tools.current()
    await rt.memory.settled(live.id)  # every acknowledged turn is in the store
    agent = live.agent
    blocks = await rt.store.get_blocks(agent.block_ids)
    messages = await rt.store.list_messages(agent.id, limit=None) if with_messages else []
    tools = [_spec(rt, name) for name in agent.tools if rt.registry.get(name) is not None]
    document = to_agent_file(agent, blocks, tools, messages, with_messages=with_messages)
    return Response(orjson.dumps(document, option=orjson.OPT_INDENT_2), media_type="application/json")


def _spec(rt: Runtime, name: str) -> ToolSpec:
    tool = rt.registry.get(name)
    assert tool is not None
    schema = tool.openai_schema()["function"]
    record = tool.record if tool.kind == "custom" else None
    return ToolSpec(name=name, description=str(schema.get("description", "")), json_schema=schema,
                    source_code=record.source_code if record is not None else None,
                    tags=list(record.tags) if record is not None else [],
                    return_char_limit=record.return_char_limit if record is not None else 50000)


async def import_agent(request: Request) -> Response:
    rt = runtime(request)
    options, raw = await _read_upload(request)
    try:
        data = orjson.loads(raw)  # bounded nesting: a deep file is a 400, not a RecursionError
    except orjson.JSONDecodeError:
        raise APIError(400, "the agent file is not JSON", param="file", code="invalid_json") from None
    try:
        parsed = read_agent_file(data)
    except AgentFileError as exc:
        raise APIError(400, f"{exc.param}: {exc}", param=exc.param, code="invalid_agent_file") from None
    async with rt.tools.writing():  # its custom tools are written like POST /v1/tools writes them
        return await _import(rt, parsed, options)


async def _import(rt: Runtime, parsed: AgentFile, options: dict[str, str]) -> Response:
    plans = [_plan(rt, parsed, plan, options) for plan in parsed.agents]
    tools = _check_tools(rt, parsed, options)
    created: list[str] = []
    made_tools: list[Tool] = []
    try:
        made_tools = await _write_tools(rt, tools)
        made_blocks: dict[str, Block] = {}
        for agent, blocks, plan in plans:
            new_blocks = [b for key, b in blocks if key not in made_blocks]
            for key, block in blocks:
                made_blocks.setdefault(key, block)
            agent.block_ids = [made_blocks[key].id if key in made_blocks else block.id for key, block in blocks]
            live = await rt.memory.create_agent(agent, new_blocks)
            created.append(live.id)
            if plan.messages and options.get("strip_messages") != "true":
                await _write_messages(rt, live.id, plan)
    except BaseException:
        for agent_id in created:  # nothing half-imported stays behind
            await rt.memory.delete_agent(agent_id)
        for record in made_tools:
            await rt.store.delete_tool(record.id)
            rt.registry.remove(record.name)
        raise
    return Response(orjson.dumps({"agent_ids": created}), media_type="application/json")


async def _read_upload(request: Request) -> tuple[dict[str, str], bytes]:
    """(form options, the file's bytes): multipart as Letta's SDKs send it, or the file as a JSON body."""
    raw = await read_body(request)  # 413 past the configured body size, before any parsing
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        return {}, raw

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    if not kind.startswith("multipart/form-data"):
        raise APIError(400, "upload the agent file as multipart/form-data (field `file`) or send it as JSON",
                       param="file", code="invalid_request")
    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=len(_FORM_FIELDS))
    except Exception as exc:  # noqa: BLE001 - python-multipart's and Starlette's parse errors
        raise APIError(400, f"malformed multipart body: {exc}", param="file", code="invalid_request") from None
    options: dict[str, str] = {}
    upload: bytes | None = None
    for key, value in form.multi_items():
        if key not in _FORM_FIELDS:
            raise APIError(400, f"unknown form field {key!r}", param=key, code="unsupported_parameter")
        if isinstance(value, UploadFile):
            upload = await value.read() if key == "file" else None
        else:
            options[key] = value.strip().lower() if key in ("append_copy_suffix", "override_existing_tools",
                                                            "strip_messages") else value
    if upload is None:
        raise APIError(400, "the form has no `file` field with the agent file", param="file", code="invalid_request")
    options["x_embedding"] = request.headers.get("x-override-embedding-model", "")
    return options, upload


def _plan(rt: Runtime, parsed: AgentFile, plan: AgentPlan,
          options: dict[str, str]) -> tuple[Agent, list[tuple[str, Block]], AgentPlan]:
    """The agent and its blocks, checked as the management API checks a create (errors name the file's place)."""
    body = dict(plan.fields)
    for key, option in (("name", "name"), ("name", "override_name"), ("model", "model"),
                        ("model", "override_model_handle"), ("embedding", "embedding"),
                        ("embedding", "override_embedding_handle"), ("embedding", "x_embedding")):
        if options.get(option):
            body[key] = options[option]  # top-level fields win over llm_config / embedding_config
    env = options.get("secrets") or options.get("env_vars_json")
    if env:
        try:
            given = orjson.loads(env)
        except orjson.JSONDecodeError:
            raise APIError(400, "secrets must be a JSON object of KEY: value", param="secrets",
                           code="invalid_json") from None
        body["secrets"] = {**(body.get("secrets") or {}), **given} if isinstance(given, dict) else given
        body.pop("tool_exec_environment_variables", None)
    try:
        refuse_unsupported(body, AGENT_FIELDS)  # agent_type passes only as letta_v1_agent, memproxy's loop
        fields = agent_fields(body)
    except APIError as exc:
        raise _placed(exc, plan.param) from None
    order = list(parsed.blocks)
    blocks: list[tuple[str, Block]] = []
    for key in plan.block_keys:
        try:
            blocks.append((key, new_block(dict(parsed.blocks[key]), "block")))
        except APIError as exc:
            raise _placed(exc, f"blocks[{order.index(key)}]") from None
    try:
        blocks += [(new_id("inline"), new_block(entry, "memory_blocks")) for entry in plan.inline_blocks]
        unique_labels([b for _, b in blocks])
    except APIError as exc:
        raise _placed(exc, plan.param) from None
    values = dict(fields.values)
    values.setdefault("system", DEFAULT_SYSTEM)
    values.setdefault("model", rt.settings.default_model)
    values.setdefault("name", f"agent-{uuid.uuid4().hex[:8]}")
    if options.get("append_copy_suffix") == "true":
        values["name"] += "_copy"
    try:
        if body.get("tool_rules") is not None:
            body["tool_rules"] = imported_rules(body["tool_rules"], plan.tool_names)
        rules = rules_for(body, plan.tool_names, None, rt.registry)
    except APIError as exc:
        raise _placed(exc, plan.param) from None
    agent = Agent(id=new_id("agent"), tools=plan.tool_names, llm_params=fields.llm_params,
                  tool_env=fields.tool_env or {}, tool_rules=rules, **values)
    return agent, blocks, plan


def _placed(exc: APIError, where: str) -> APIError:
    """The management API's error for a field, named by its place in the file."""
    param = f"{where}.{exc.param}" if exc.param else where
    return APIError(exc.status, f"{param}: {exc.message}", param=param, code=exc.code)


def _check_tools(rt: Runtime, parsed: AgentFile, options: dict[str, str]) -> list[tuple[ToolSpec, dict[str, Any]]]:
    """The file's custom tools with their checked schemas; every name an agent uses must be runnable here."""
    custom: list[tuple[ToolSpec, dict[str, Any]]] = []
    names = {spec.name for spec in parsed.tools.values() if spec.source_code is not None}
    for spec in parsed.tools.values():
        existing = rt.registry.get(spec.name)
        if spec.source_code is None:
            if existing is None or existing.kind != "builtin":
                raise APIError(400, f"{spec.param}: memproxy has no built-in tool named {spec.name!r}",
                               param=f"{spec.param}.name", code="tool_not_found")
            continue
        if existing is not None and existing.kind == "builtin":
            raise APIError(409, f"{spec.param}: {spec.name!r} is a built-in tool and cannot be replaced",
                           param=f"{spec.param}.name", code="conflict")
        if existing is not None and existing.record.source_code != spec.source_code \
                and options.get("override_existing_tools") == "false":
            raise APIError(409, f"{spec.param}: a different tool named {spec.name!r} exists "
                           "(override_existing_tools is false)", param=f"{spec.param}.name", code="conflict")
        try:
            schema = checked_schema(spec.source_code, spec.json_schema or None)
        except SourceError as exc:
            raise APIError(400, f"{spec.param}: {exc}", param=f"{spec.param}.source_code",
                           code="invalid_tool") from None
        if schema["name"] != spec.name:
            raise APIError(400, f"{spec.param}: the source defines {schema['name']!r}, not {spec.name!r}",
                           param=f"{spec.param}.name", code="invalid_tool")
        custom.append((spec, schema))
    for plan in parsed.agents:
        for name in plan.tool_names:
            if name not in names and name not in rt.registry:
                raise APIError(400, f"{plan.param}.tools: no tool named {name!r} in the file or in memproxy",
                               param=f"{plan.param}.tools", code="tool_not_found")
    return custom


async def _write_tools(rt: Runtime, tools: list[tuple[ToolSpec, dict[str, Any]]]) -> list[Tool]:
    """Create or update the custom tools; returns the ones created (to remove again if the import fails)."""
    made: list[Tool] = []
    for spec, schema in tools:
        existing = rt.registry.get(spec.name)
        if existing is not None and existing.record.source_code == spec.source_code:
            continue
        if existing is not None:
            record = replace(existing.record, source_code=spec.source_code, json_schema=schema,
                             description=schema.get("description", ""), updated_at=utcnow())
            await rt.store.update_tool(record)
        else:
            record = Tool(id=new_id("tool"), name=spec.name, source_code=spec.source_code or "", json_schema=schema,
                          description=schema.get("description", ""), tags=list(dict.fromkeys(spec.tags)),
                          return_char_limit=spec.return_char_limit)
            await rt.store.create_tool(record)
            made.append(record)
        rt.registry.add(custom_tool(record, rt.sandbox))
    return made


async def _write_messages(rt: Runtime, agent_id: str, plan: AgentPlan) -> None:
    messages = [replace(m, agent_id=agent_id, seq=i + 1) for i, m in enumerate(plan.messages)]
    await rt.memory.commit(Changes(messages=messages, insert_only=True))
    rt.memory.forget(agent_id)  # reloaded from the store on its next turn, with the imported history in context
    if rt.turns is not None and rt.turns.env.on_messages is not None:
        rt.turns.env.on_messages(messages)  # searchable by conversation_search



_OPTION = {"type": "string", "maxLength": 256}
# The import's body is multipart (Letta's SDKs) and read by `_read_upload`, not by a JSON model: documented here.
IMPORT_BODY: dict[str, Any] = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "additionalProperties": False,
    "properties": {"file": {"type": "string", "format": "binary", "description": "the .af file (Letta's v2 JSON)"},
                   **{name: _OPTION for name in sorted(_FORM_FIELDS - {"file"})}}}}}}
EXPORT_QUERY: list[dict[str, Any]] = [
    {"name": "agent_id", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "scrub_messages", "in": "query", "required": False, "schema": {"type": "boolean"}},
    {"name": "use_legacy_format", "in": "query", "required": False, "schema": {"type": "boolean"}},
]
