"""Reading a Letta agent file: shapes, references between its entities, and messages (see agent_file.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from memory.models import Message, new_id
from memory.portable.agent_file import (IGNORED_AGENT_KEYS, IGNORED_BLOCK_KEYS, IGNORED_MESSAGE_KEYS,
                                        IGNORED_TOOL_KEYS, STRUCTURE_AGENT_KEYS, TOP_KEYS, AgentFileError,
                                        AgentPlan, ToolSpec)

MAX_ENTITIES = 10_000  # blocks, tools or messages of one file
_OFF: tuple[Any, ...] = (None, False, [], {}, "")
_ROLES = ("user", "assistant", "tool", "system")


@dataclass
class AgentFile:
    blocks: dict[str, dict[str, Any]]  # file id -> the block's fields (label, value, ...)
    tools: dict[str, ToolSpec]  # file id -> tool
    agents: list[AgentPlan]


def read_agent_file(data: Any) -> AgentFile:
    if not isinstance(data, dict):
        raise AgentFileError("an agent file must be a JSON object", "file")
    if "agents" not in data and ("name" in data or "memory" in data):
        raise AgentFileError("this is Letta's legacy v1 agent file; memproxy reads the v2 format "
                             "(export it again without use_legacy_format)", "file")
    for key, value in data.items():
        if key not in TOP_KEYS:
            raise AgentFileError(f"unknown agent-file field {key!r}", key)
    for key in ("groups", "files", "sources", "mcp_servers"):
        if data.get(key) not in _OFF:
            raise AgentFileError(f"memproxy does not support {key} (multi-agent groups, files and data sources, "
                                 "MCP servers); remove them from the file", key)
    blocks: dict[str, dict[str, Any]] = {}
    for i, block in enumerate(_list(data, "blocks", "blocks")):
        where = f"blocks[{i}]"
        _obj(block, where)
        _off_or_known(block, IGNORED_BLOCK_KEYS | {"label", "value", "limit", "description", "read_only", "metadata"},
                      where)
        blocks[_file_id(block, where, blocks)] = {k: v for k, v in block.items() if k not in IGNORED_BLOCK_KEYS}
    tools: dict[str, ToolSpec] = {}
    for i, tool in enumerate(_list(data, "tools", "tools")):
        where = f"tools[{i}]"
        _obj(tool, where)
        tools[_file_id(tool, where, tools)] = _tool(tool, where)
    agents = [_agent(agent, f"agents[{i}]", blocks, tools) for i, agent in enumerate(_list(data, "agents", "agents"))]
    if not agents:
        raise AgentFileError("the file holds no agent", "agents")
    return AgentFile(blocks, tools, agents)


def _tool(tool: dict[str, Any], where: str) -> ToolSpec:
    known = {"name", "description", "tags", "source_code", "json_schema", "return_char_limit", "tool_type",
             "source_type", "pip_requirements", "npm_requirements", "default_requires_approval"}
    _off_or_known(tool, IGNORED_TOOL_KEYS | known, where)
    for key in ("pip_requirements", "npm_requirements", "default_requires_approval"):
        if tool.get(key) not in _OFF:
            raise AgentFileError(f"memproxy does not support {key} on tools", f"{where}.{key}")
    name = tool.get("name") or (tool.get("json_schema") or {}).get("name")
    if not isinstance(name, str) or not name:
        raise AgentFileError("a tool needs a name", f"{where}.name")
    kind = tool.get("tool_type") or "custom"
    source = tool.get("source_code")
    if kind == "custom":
        if tool.get("source_type") not in (None, "python"):
            raise AgentFileError("only Python tools can run in memproxy", f"{where}.source_type")
        if not isinstance(source, str) or not source.strip():
            raise AgentFileError("a custom tool needs its source_code", f"{where}.source_code")
    elif not kind.startswith("letta_"):
        raise AgentFileError(f"memproxy cannot run {kind} tools", f"{where}.tool_type")
    else:
        source = None  # a Letta built-in: memproxy must have one by that name (checked against the registry)
    schema = tool.get("json_schema")
    if schema is not None and not isinstance(schema, dict):
        raise AgentFileError("json_schema must be an object", f"{where}.json_schema")
    limit = tool.get("return_char_limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise AgentFileError("return_char_limit must be a positive integer", f"{where}.return_char_limit")
    tags = tool.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise AgentFileError("tags must be a list of strings", f"{where}.tags")
    description = tool.get("description") or ""
    if not isinstance(description, str):
        raise AgentFileError("description must be a string", f"{where}.description")
    return ToolSpec(name=name, description=description, json_schema=dict(schema or {}), source_code=source,
                    tags=tags, return_char_limit=limit or 50000, param=where)


def _agent(agent: Any, where: str, blocks: dict[str, Any], tools: dict[str, ToolSpec]) -> AgentPlan:
    _obj(agent, where)
    for key in ("files_agents", "group_ids", "source_ids", "identity_ids"):
        if agent.get(key) not in _OFF:
            raise AgentFileError(f"memproxy does not support {key}", f"{where}.{key}")
    block_keys = [_ref(ref, blocks, f"{where}.block_ids[{i}]", "block")
                  for i, ref in enumerate(_list(agent, "block_ids", f"{where}.block_ids"))]
    inline = _list(agent, "memory_blocks", f"{where}.memory_blocks")
    names = [tools[_ref(ref, tools, f"{where}.tool_ids[{i}]", "tool")].name
             for i, ref in enumerate(_list(agent, "tool_ids", f"{where}.tool_ids"))]
    for i, name in enumerate(_list(agent, "tools", f"{where}.tools")):
        if not isinstance(name, str):
            raise AgentFileError("tools must be tool names", f"{where}.tools[{i}]")
        names.append(name)
    names = list(dict.fromkeys(names))
    rules = _list(agent, "tool_rules", f"{where}.tool_rules")
    for i, rule in enumerate(rules):
        _obj(rule, f"{where}.tool_rules[{i}]")
    fields = {k: v for k, v in agent.items() if k not in STRUCTURE_AGENT_KEYS and k not in IGNORED_AGENT_KEYS}
    if rules:
        fields["tool_rules"] = rules  # checked by the HTTP layer as an agent create checks them
    for key in ("secrets", "tool_exec_environment_variables"):
        # Letta exports secrets as null values: the keys say what the tools need, the values are given at import.
        if isinstance(fields.get(key), dict):
            fields[key] = {k: v for k, v in fields[key].items() if v is not None} or None
        elif isinstance(fields.get(key), list):
            fields[key] = [item for item in fields[key] if not isinstance(item, dict) or item.get("value")] or None
    return AgentPlan(fields=fields, block_keys=list(dict.fromkeys(block_keys)), inline_blocks=inline,
                     tool_names=names, messages=_messages(agent, where), param=where)


def _messages(agent: dict[str, Any], where: str) -> list[Message]:
    raw = _list(agent, "messages", f"{where}.messages")
    if len(raw) > MAX_ENTITIES:
        raise AgentFileError(f"more than {MAX_ENTITIES} messages", f"{where}.messages")
    in_context = _list(agent, "in_context_message_ids", f"{where}.in_context_message_ids")
    seen: set[str] = set()
    out: list[Message] = []
    for i, message in enumerate(raw):
        at = f"{where}.messages[{i}]"
        _obj(message, at)
        _off_or_known(message, IGNORED_MESSAGE_KEYS, at)
        ident = _file_id(message, at, seen)
        seen.add(ident)
        role = message.get("role")
        if role not in _ROLES:
            raise AgentFileError(f"memproxy stores roles {', '.join(_ROLES)}, not {role!r}", f"{at}.role")
        content = _text(message.get("content"), f"{at}.content")
        if role == "tool" and not content:
            returns = message.get("tool_returns") or []
            if isinstance(returns, list) and returns and isinstance(returns[0], dict):
                content = str(returns[0].get("func_response") or "")
        if i == 0 and role == "system":
            continue  # Letta's compiled system prompt: memproxy compiles its own from `system` and the blocks
        calls = message.get("tool_calls")
        if calls is not None:
            calls = [_call(call, f"{at}.tool_calls[{j}]") for j, call in enumerate(_list(message, "tool_calls", at))]
        for key in ("name", "tool_call_id"):
            if message.get(key) is not None and not isinstance(message[key], str):
                raise AgentFileError(f"{key} must be a string", f"{at}.{key}")
        out.append(Message(id=new_id("message"), agent_id="", seq=0, role=role, content=content or None,
                           tool_calls=calls or None, tool_call_id=message.get("tool_call_id"),
                           name=message.get("name"), in_context=ident in in_context,
                           created_at=_date(message.get("created_at"), f"{at}.created_at")))
    for i, ref in enumerate(in_context):
        if ref not in seen:
            raise AgentFileError(f"{ref!r} is not one of the agent's messages", f"{where}.in_context_message_ids[{i}]")
    return out


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise AgentFileError("content must be a string or a list of parts", where)
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "reasoning", "omitted_reasoning"):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise AgentFileError(f"memproxy imports text content only, not {kind!r}", f"{where}[{i}]")
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise AgentFileError("a text part needs its text", f"{where}[{i}].text")
            texts.append(part["text"])
    return "".join(texts)


def _call(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(call.get("id"), str) \
            or not isinstance(function.get("name"), str) or not isinstance(function.get("arguments"), str):
        raise AgentFileError("a tool call needs id, function.name and function.arguments (a JSON string)", where)
    return {"id": call["id"], "type": "function",
            "function": {"name": function["name"], "arguments": function["arguments"]}}


def _date(value: Any, where: str) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise AgentFileError(f"not an ISO 8601 date: {value!r}", where) from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed


def _obj(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise AgentFileError("must be an object", where)


def _list(obj: dict[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise AgentFileError("must be a list", where)
    if len(value) > MAX_ENTITIES:
        raise AgentFileError(f"more than {MAX_ENTITIES} entries", where)
    return value


def _file_id(obj: dict[str, Any], where: str, seen: Any) -> str:
    ident = obj.get("id")
    if not isinstance(ident, str) or not ident:
        raise AgentFileError("needs a string id", f"{where}.id")
    if ident in seen:
        raise AgentFileError(f"the id {ident!r} is used twice", f"{where}.id")
    return ident


def _ref(ref: Any, entities: dict[str, Any], where: str, kind: str) -> str:
    if not isinstance(ref, str) or ref not in entities:
        raise AgentFileError(f"{ref!r} is not the id of a {kind} in the file", where)
    return ref


def _off_or_known(obj: dict[str, Any], known: frozenset[str] | set[str], where: str) -> None:
    for key, value in obj.items():
        if key not in known and value not in _OFF:
            raise AgentFileError(f"memproxy does not support {key!r} here; leave it unset", f"{where}.{key}")
