"""Letta's agent file (`.af`, the multi-entity "v2" AgentFileSchema) to and from memproxy's records.

Export writes one agent with its blocks, tools, messages and tool rules. Ids in the file are local to it
(`agent-0`, `block-1`, `message-2`, ...), as Letta writes them: an import always makes new ids. Letta keeps
the compiled system prompt as the first message; memproxy compiles its own, so export writes `system` as
that first message and import skips a leading system message. Tool rules go out as the agent holds them
(Letta's shapes); import hands them to the HTTP layer, which checks them as an agent create does. Secrets
are exported as null.

Import here is structural (shapes, references between entities, message content); the HTTP layer checks
the agent and block fields with the management API's own validation. Every problem is an
`AgentFileError` naming its place in the file (`agents[0].messages[3].role`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from memory.models import Agent, Block, Message

# Letta bookkeeping that has no meaning outside Letta's server: read past, whatever its value.
IGNORED_AGENT_KEYS = frozenset({
    "project_id", "template_id", "base_template_id", "deployment_id", "entity_id", "from_template", "template",
    "project", "hidden", "created_by_id", "last_updated_by_id", "created_at", "updated_at", "include_base_tools",
    "include_multi_agent_tools", "include_base_tool_rules", "include_default_source", "max_files_open",
    "per_file_view_window_char_limit", "parallel_tool_calls", "embedding_chunk_size", "max_steps"})
IGNORED_BLOCK_KEYS = frozenset({
    "id", "project_id", "template_name", "is_template", "template_id", "base_template_id", "deployment_id",
    "entity_id", "preserve_on_migration", "hidden", "created_by_id", "last_updated_by_id", "created_at",
    "updated_at", "organization_id"})
IGNORED_MESSAGE_KEYS = frozenset({
    "id", "type", "otid", "sender_id", "batch_item_id", "group_id", "model", "agent_id", "step_id", "run_id",
    "tool_returns", "created_at", "name", "tool_calls", "tool_call_id", "role", "content", "is_err",
    "created_by_id", "last_updated_by_id", "updated_at", "organization_id"})
IGNORED_TOOL_KEYS = frozenset({"id", "created_by_id", "last_updated_by_id", "metadata_", "organization_id",
                               "enable_parallel_execution", "args_json_schema"})
# Structure the import maps itself; every other agent key goes to the management API's agent validation.
STRUCTURE_AGENT_KEYS = frozenset({"id", "block_ids", "tool_ids", "tools", "messages", "in_context_message_ids",
                                  "tool_rules", "memory_blocks", "files_agents", "group_ids", "source_ids",
                                  "identity_ids"})
TOP_KEYS = ("agents", "groups", "blocks", "files", "sources", "tools", "mcp_servers", "metadata", "created_at")
_EDIT_TOOLS = frozenset({"memory_insert", "memory_replace", "memory_rethink"})


class AgentFileError(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class ToolSpec:
    """A tool as an agent file carries it: built-in (source_code None) or custom Python."""

    name: str
    description: str
    json_schema: dict[str, Any]
    source_code: str | None = None
    tags: list[str] = field(default_factory=list)
    return_char_limit: int = 50000
    param: str = ""  # where in the file it came from


@dataclass
class AgentPlan:
    """One agent of a file, references resolved, ready for the HTTP layer's field validation and writes."""

    fields: dict[str, Any]  # Letta agent fields for the management API's validation
    block_keys: list[str]  # the file ids of its blocks, in order
    inline_blocks: list[dict[str, Any]]  # `memory_blocks` written inside the agent
    tool_names: list[str]
    messages: list[Message]  # agent_id and seq unset (filled when the agent exists)
    param: str


# --- export ---------------------------------------------------------------------------------------
def to_agent_file(agent: Agent, blocks: list[Block], tools: list[ToolSpec], messages: list[Message],
                  *, with_messages: bool = True) -> dict[str, Any]:
    block_ids = {b.id: f"block-{i}" for i, b in enumerate(blocks)}
    tool_ids = {t.name: f"tool-{i}" for i, t in enumerate(tools)}
    file_messages = [_system_message(agent)] + ([_message_json(m, i + 1) for i, m in enumerate(messages)]
                                                if with_messages else [])
    in_context = ["message-0"] + [f"message-{i + 1}" for i, m in enumerate(messages)
                                  if with_messages and m.in_context]
    file_agent = {
        "id": "agent-0", "name": agent.name, "system": agent.system, "description": agent.description,
        "agent_type": "letta_v1_agent", "tags": list(agent.tags), "metadata": dict(agent.metadata),
        "model": agent.model, "embedding": agent.embedding, "context_window_limit": agent.context_window_limit,
        "llm_config": {"model": agent.model, "context_window": agent.context_window_limit,
                       "temperature": agent.llm_params.get("temperature"),
                       "max_tokens": agent.llm_params.get("max_tokens")},
        "embedding_config": {"embedding_model": agent.embedding} if agent.embedding else None,
        "message_buffer_autoclear": agent.message_buffer_autoclear, "timezone": agent.timezone,
        "block_ids": [block_ids[b.id] for b in blocks], "tool_ids": [tool_ids[t.name] for t in tools],
        "tool_rules": [dict(rule) for rule in agent.tool_rules],
        "secrets": {key: None for key in agent.tool_env} or None,
        "messages": file_messages, "in_context_message_ids": in_context,
        "memory_blocks": [], "tools": [], "source_ids": [], "files_agents": [], "group_ids": [], "identity_ids": [],
        "enable_sleeptime": False, "response_format": None,
    }
    return {
        "agents": [file_agent], "groups": [], "files": [], "sources": [], "mcp_servers": [],
        "blocks": [{"id": block_ids[b.id], "label": b.label, "value": b.value, "limit": b.limit,
                    "description": b.description, "read_only": b.read_only, "metadata": dict(b.metadata)}
                   for b in blocks],
        "tools": [{"id": tool_ids[t.name], "name": t.name, "description": t.description,
                   "tool_type": "custom" if t.source_code is not None else
                   ("letta_memory_core" if t.name in _EDIT_TOOLS else "letta_core"),
                   "source_type": "python", "source_code": t.source_code, "json_schema": t.json_schema,
                   "tags": list(t.tags), "return_char_limit": t.return_char_limit, "pip_requirements": None,
                   "npm_requirements": None, "default_requires_approval": None} for t in tools],
        "metadata": {"exported_by": "memproxy"},
        "created_at": datetime.now(timezone.utc).isoformat(),
    }


def _system_message(agent: Agent) -> dict[str, Any]:
    return {"type": "message", "id": "message-0", "role": "system",
            "content": [{"type": "text", "text": agent.system}], "created_at": agent.created_at.isoformat()}


def _message_json(message: Message, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "message", "id": f"message-{index}", "role": message.role,
        "content": [{"type": "text", "text": message.content}] if message.content else [],
        "name": message.name, "tool_calls": message.tool_calls, "tool_call_id": message.tool_call_id,
        "created_at": message.created_at.isoformat()}
    if message.role == "tool":
        out["tool_returns"] = [{"status": "error" if message.metadata.get("error") else "success",
                                "func_response": message.content}]
    return out
