"""The rules of management-API bodies beyond their types: labels, limits that depend on other fields, tool and
time-zone names, and turning the fields a client set into Block and Agent values. The bodies reach here typed
(proxy/api/wire/); the getters still check each value, so these helpers stay safe on any dict. Every violation
is a 422 naming its field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from memory.models import DEFAULT_BLOCK_LIMIT, LABEL_PATTERN, Block, new_id
from proxy.api.operations import OFF_VALUES
from proxy.api.wire.agents import AgentCreate, AgentUpdate
from proxy.errors import APIError, unprocessable
from proxy.limits import (MAX_BLOCK_LIMIT, MAX_CONTEXT_WINDOW, MAX_DESCRIPTION_CHARS, MAX_INT, MAX_LIST_ITEMS,
                          MAX_NAME_CHARS, MAX_OUTPUT_TOKENS, MAX_TEXT_CHARS, check_int, check_json,
                          check_text)

# OpenAI's rule for function names, which tool names become upstream.
TOOL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
SAMPLING_FIELDS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
_BLOCK_FIELDS = ("label", "value", "limit", "description", "read_only", "metadata")
_MISSING: Any = object()
_AGENT_STR_FIELDS = (("name", MAX_NAME_CHARS), ("system", MAX_TEXT_CHARS), ("model", MAX_NAME_CHARS),
                     ("embedding", MAX_NAME_CHARS), ("description", MAX_DESCRIPTION_CHARS))


def _type_error(name: str, expected: str) -> Exception:
    return unprocessable(f"{name!r} must be {expected}", param=name)


def get_str(body: dict[str, Any], name: str, *, nullable: bool = False, max_chars: int = MAX_TEXT_CHARS) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or (value is None and nullable):
        return value
    if isinstance(value, str):
        return check_text(value, name, max_chars)
    raise _type_error(name, "a string" + (" or null" if nullable else ""))


def get_bool(body: dict[str, Any], name: str) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or isinstance(value, bool):
        return value
    raise _type_error(name, "a boolean")


def get_int(body: dict[str, Any], name: str, *, nullable: bool = False, low: int = 1, high: int = MAX_INT) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or (value is None and nullable):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if value < low:
            raise unprocessable(f"{name!r} must be at least {low}", param=name)
        if value > high:
            raise unprocessable(f"{name!r} must be at most {high}", param=name)
        return value
    raise _type_error(name, "an integer" + (" or null" if nullable else ""))


def get_number(body: dict[str, Any], name: str) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None or isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return check_int(value, name, low=-MAX_INT)
    raise _type_error(name, "a number")


def get_dict(body: dict[str, Any], name: str) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None or isinstance(value, dict):
        return value
    raise _type_error(name, "an object")


def get_json_dict(body: dict[str, Any], name: str) -> Any:
    """An object stored as given (metadata): bounded in depth and size so it can always be read back."""
    value = get_dict(body, name)
    return check_json(value, name) if isinstance(value, dict) else value


def get_str_list(body: dict[str, Any], name: str, *, max_chars: int = MAX_NAME_CHARS) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if len(value) > MAX_LIST_ITEMS:
            raise unprocessable(f"{name!r} has {len(value)} items; the limit is {MAX_LIST_ITEMS}", param=name)
        for item in value:
            check_text(item, name, max_chars)
        return value
    raise _type_error(name, "a list of strings")


def check_label(label: str, param: str = "label") -> str:
    if not LABEL_PATTERN.match(label):
        raise unprocessable(f"block label {label!r} is invalid: use letters, digits, '_' or '-', starting with a "
                            "letter or '_', at most 64 characters", param=param)
    return label


def check_fits(block: Block, param: str = "value") -> None:
    if len(block.value) > block.limit:
        raise unprocessable(f"value is {len(block.value)} characters, over the block's limit of {block.limit}",
                            param=param, code="block_limit_exceeded")


def new_block(body: Any, param: str = "block") -> Block:
    """A block from a create body (POST /v1/blocks or one entry of `memory_blocks`)."""
    if not isinstance(body, dict):
        raise _type_error(param, "an object")
    label = get_str(body, "label")
    if label is _MISSING:
        raise unprocessable("'label' is required", param="label")
    block = Block(id=new_id("block"), label=check_label(label))
    apply_block_update(block, {k: v for k, v in body.items() if k != "label"})
    return block


def apply_block_update(block: Block, body: dict[str, Any]) -> bool:
    """Apply the fields present in `body` to `block` (a copy); True when anything changed."""
    before = tuple(getattr(block, name) for name in _BLOCK_FIELDS)
    label = get_str(body, "label")
    if label is not _MISSING:
        block.label = check_label(label)
    value = get_str(body, "value")
    if value is not _MISSING:
        block.value = value
    limit = get_int(body, "limit", nullable=True, high=MAX_BLOCK_LIMIT)
    if limit is not _MISSING:
        block.limit = DEFAULT_BLOCK_LIMIT if limit is None else limit
    description = get_str(body, "description", nullable=True, max_chars=MAX_DESCRIPTION_CHARS)
    if description is not _MISSING:
        block.description = description
    read_only = get_bool(body, "read_only")
    if read_only is not _MISSING:
        block.read_only = read_only
    metadata = get_json_dict(body, "metadata")
    if metadata is not _MISSING:
        block.metadata = metadata or {}
    check_fits(block)
    return before != tuple(getattr(block, name) for name in _BLOCK_FIELDS)


def check_timezone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise unprocessable(f"timezone {zone!r} is not an IANA time zone name (e.g. 'Europe/Paris')",
                            param="timezone") from None
    return zone


# Agent fields memproxy honours, for agent bodies not read through a model (an agent file's agent).
AGENT_FIELDS = frozenset(AgentUpdate.model_fields)


def refuse_unsupported(body: dict[str, Any], honoured: frozenset[str]) -> None:
    """400 naming the first field outside `honoured` set to anything but "off": AgentCreate's rule, on a dict."""
    for name, value in body.items():
        if name in honoured or value in OFF_VALUES or AgentCreate.ignored.get(name, _MISSING) == value:
            continue
        raise APIError(400, f"`{name}` is not supported by memproxy (see the README's Letta API section); "
                       "leave it unset", param=name, code="unsupported_parameter")


def initial_messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    """Letta's `initial_message_sequence`: (role, text) pairs that open the agent's history."""
    raw = body.get("initial_message_sequence")
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_LIST_ITEMS:
        raise _type_error("initial_message_sequence", f"a list of at most {MAX_LIST_ITEMS} messages")
    out: list[tuple[str, str]] = []
    for i, message in enumerate(raw):
        where = f"initial_message_sequence[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            # A stored system message is a summary to memproxy; the agent's `system` is the place for instructions.
            raise unprocessable(f"{where} must be a message with role user or assistant", param=where)
        content = message.get("content")
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            content = "".join(str(p.get("text", "")) for p in content)
        if not isinstance(content, str):
            raise unprocessable(f"{where}.content must be a string or text parts", param=where + ".content")
        out.append((message["role"], check_text(content, where + ".content")))
    return out


@dataclass
class AgentFields:
    """The agent fields a create or modify body set; None means "not given"."""

    values: dict[str, Any] = field(default_factory=dict)  # Agent attributes to overwrite
    llm_params: dict[str, Any] = field(default_factory=dict)  # merged into Agent.llm_params
    tools: list[str] | None = None
    tool_ids: list[str] | None = None
    block_ids: list[str] | None = None
    tool_env: dict[str, str] | None = None  # the agent's whole set of tool variables, replacing the old one


def agent_fields(body: dict[str, Any]) -> AgentFields:
    """Every agent field shared by create and modify, type-checked; null leaves a field unchanged."""
    out = AgentFields()
    for name, max_chars in _AGENT_STR_FIELDS:
        value = get_str(body, name, nullable=True, max_chars=max_chars)
        if value is not _MISSING and value is not None:
            out.values[name] = value
    if out.values.get("name") == "":
        raise unprocessable("'name' must not be empty", param="name")
    for name in ("tags",):
        value = get_str_list(body, name)
        if value is not _MISSING and value is not None:
            out.values[name] = list(dict.fromkeys(value))
    metadata = get_json_dict(body, "metadata")
    if metadata is not _MISSING and metadata is not None:
        out.values["metadata"] = metadata
    autoclear = get_bool(body, "message_buffer_autoclear")
    if autoclear is not _MISSING:
        out.values["message_buffer_autoclear"] = autoclear
    zone = get_str(body, "timezone", nullable=True, max_chars=MAX_NAME_CHARS)
    if isinstance(zone, str):
        out.values["timezone"] = check_timezone(zone)
    window = get_int(body, "context_window_limit", nullable=True, high=MAX_CONTEXT_WINDOW)
    if window is not _MISSING and window is not None:
        out.values["context_window_limit"] = window
    _llm_config(body, out)
    for name in SAMPLING_FIELDS:
        value = get_number(body, name)
        if value is not _MISSING and value is not None:
            out.llm_params[name] = value
    max_tokens = get_int(body, "max_tokens", nullable=True, high=MAX_OUTPUT_TOKENS)
    if max_tokens is not _MISSING and max_tokens is not None:
        out.llm_params["max_tokens"] = max_tokens
    tools = get_str_list(body, "tools")
    if tools is not _MISSING and tools is not None:
        for name in tools:
            if not TOOL_NAME_PATTERN.match(name):
                raise unprocessable(f"tool name {name!r} is invalid", param="tools")
        out.tools = list(dict.fromkeys(tools))
    for name in ("tool_ids", "block_ids"):
        value = get_str_list(body, name)
        if value is not _MISSING and value is not None:
            setattr(out, name, list(dict.fromkeys(value)))
    for name in ("secrets", "tool_exec_environment_variables"):  # Letta's new and old names for one thing
        if body.get(name) is not None:
            out.tool_env = _tool_env(body[name], name)
    return out


def _tool_env(value: Any, name: str) -> dict[str, str]:
    """{KEY: value}, or Letta's list of {key, value} objects."""
    if isinstance(value, list):
        if not all(isinstance(item, dict) and "key" in item for item in value):
            raise unprocessable(f"{name!r} must be an object of KEY: value, or a list of {{key, value}}", param=name)
        value = {item["key"]: item.get("value") for item in value}
    if not isinstance(value, dict):
        raise unprocessable(f"{name!r} must be an object of KEY: value", param=name)
    for key, item in value.items():
        if not ENV_NAME_PATTERN.match(str(key)) or key == "PATH":
            raise unprocessable(f"{key!r} is not a usable environment variable name", param=name)
        if not isinstance(item, str) or "\0" in item:
            raise unprocessable(f"the value of {key!r} must be a string", param=name)
    return dict(value)


def _llm_config(body: dict[str, Any], out: AgentFields) -> None:
    """Letta's deprecated `llm_config`/`embedding_config` objects; top-level fields win over them."""
    config = get_dict(body, "llm_config")
    if isinstance(config, dict):
        model = get_str(config, "model", nullable=True, max_chars=MAX_NAME_CHARS)
        if isinstance(model, str) and model and "model" not in out.values:
            out.values["model"] = model
        window = get_int(config, "context_window", nullable=True, high=MAX_CONTEXT_WINDOW)
        if isinstance(window, int) and "context_window_limit" not in out.values:
            out.values["context_window_limit"] = window
        for name in ("temperature", "frequency_penalty"):
            value = get_number(config, name)
            if value is not _MISSING and value is not None:
                out.llm_params[name] = value
        max_tokens = get_int(config, "max_tokens", nullable=True, high=MAX_OUTPUT_TOKENS)
        if isinstance(max_tokens, int):
            out.llm_params["max_tokens"] = max_tokens
    embedding = get_dict(body, "embedding_config")
    if isinstance(embedding, dict) and "embedding" not in out.values:
        model = get_str(embedding, "embedding_model", nullable=True, max_chars=MAX_NAME_CHARS)
        if isinstance(model, str) and model:
            out.values["embedding"] = model


def memory_blocks(body: dict[str, Any]) -> list[Block]:
    raw = body.get("memory_blocks")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _type_error("memory_blocks", "a list of blocks")
    return [new_block(entry, "memory_blocks") for entry in raw]


def unique_labels(blocks: list[Block]) -> None:
    seen: set[str] = set()
    for block in blocks:
        if block.label in seen:
            raise unprocessable(f"duplicate block label {block.label!r}", param="memory_blocks")
        seen.add(block.label)
