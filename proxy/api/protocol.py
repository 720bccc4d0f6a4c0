"""The Letta wire shapes built from stored records as JSON-ready dicts; their types are in proxy/api/wire/."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from memory.agents import LiveAgent
from memory.models import DEFAULT_DESCRIPTIONS, Agent, Block, Message, Run
from memory.tokens import context_window_for
from tools.registry import ServerTool, ToolRegistry, builtin_tool_id

AGENT_TYPE = "letta_v1_agent"
# Letta reports a dimension even for models it cannot query; 1536 is OpenAI's small-model size.
DEFAULT_EMBEDDING_DIM = 1536
DEFAULT_EMBEDDING_CHUNK_SIZE = 300
_MEMORY_EDIT_TOOLS = frozenset({"memory_insert", "memory_replace", "memory_rethink", "memory_apply_patch",
                                "core_memory_append", "core_memory_replace"})


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC; stores may hand back naive or local-zone values for the same instant."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def block_json(block: Block) -> dict[str, Any]:
    return {
        "id": block.id,
        "label": block.label,
        "value": block.value,
        "limit": block.limit,
        "description": block.description or DEFAULT_DESCRIPTIONS.get(block.label),
        "read_only": block.read_only,
        "metadata": dict(block.metadata),
        "hidden": False,
        "is_template": False,
        "template_name": None,
        "template_id": None,
        "base_template_id": None,
        "deployment_id": None,
        "entity_id": None,
        "project_id": None,
        "preserve_on_migration": False,
        "created_by_id": None,
        "last_updated_by_id": None,
        "created_at": iso(block.created_at),
        "updated_at": iso(block.updated_at),
    }


def tool_json(tool: ServerTool | None, name: str = "") -> dict[str, Any]:
    """Letta's Tool; `tool` None is a name an agent holds that no longer exists (shown, never offered)."""
    record = tool.record if tool is not None and tool.kind == "custom" else None
    if tool is None:
        kind = "custom"
        schema: dict[str, Any] = {"name": name, "description": "", "parameters": {"type": "object", "properties": {}}}
    else:
        name = tool.name
        schema = tool.openai_schema()["function"]
        if tool.kind == "custom":
            kind = "custom"
        elif tool.kind == "mcp":
            kind = "external_mcp"
        else:
            kind = "letta_memory_core" if name in _MEMORY_EDIT_TOOLS else "letta_core"
    return {
        "id": tool.id if tool is not None else builtin_tool_id(name),
        "name": name,
        "description": schema.get("description", ""),
        "tool_type": kind,
        "source_type": "python",
        "json_schema": schema,
        "args_json_schema": None,
        "tags": list(record.tags) if record is not None else [kind],
        "return_char_limit": record.return_char_limit if record is not None else 50000,
        "source_code": record.source_code if record is not None else None,
        "pip_requirements": None,
        "npm_requirements": None,
        "default_requires_approval": bool(getattr(record, "default_requires_approval", False)),
        "enable_parallel_execution": False,
        "metadata": dict(record.metadata) if record is not None else _mcp_metadata(tool),
        "created_by_id": None,
        "last_updated_by_id": None,
        "created_at": iso(record.created_at) if record is not None else None,
        "updated_at": iso(record.updated_at) if record is not None else None,
    }


def _mcp_metadata(tool: ServerTool | None) -> dict[str, Any]:
    # Letta's MCP tools carry their server in metadata: {"mcp": {"server_id", "server_name"}}.
    return {"mcp": dict(tool.record)} if tool is not None and tool.kind == "mcp" else {}


def mask_secret(value: str) -> str:
    """Enough of a secret to recognise it, never enough to use it: "sk-...abcd", or "****" when short."""
    return f"{value[:3]}...{value[-4:]}" if len(value) >= 16 else "****"


def tool_env_json(agent: Agent) -> list[dict[str, Any]]:
    """Letta's AgentEnvironmentVariable list, values masked."""
    return [{"id": None, "key": key, "value": mask_secret(value), "description": None, "value_enc": None,
             "agent_id": agent.id, "created_by_id": None, "last_updated_by_id": None,
             "created_at": None, "updated_at": None}
            for key, value in sorted(agent.tool_env.items())]


def model_handle(model: str) -> str:
    return model if "/" in model else f"openai/{model}"


def llm_config_json(agent: Agent, endpoint: str | None) -> dict[str, Any]:
    params = agent.llm_params
    return {
        "model": agent.model,
        "display_name": agent.model,
        "model_endpoint_type": "openai",
        "model_endpoint": endpoint,
        "provider_name": "openai",
        "provider_category": "base",
        "model_wrapper": None,
        "context_window": context_window_for(agent.model, agent.context_window_limit),
        "put_inner_thoughts_in_kwargs": False,
        "handle": model_handle(agent.model),
        "temperature": params.get("temperature"),
        "max_tokens": params.get("max_tokens"),
        "top_p": params.get("top_p"),
        "frequency_penalty": params.get("frequency_penalty"),
        "presence_penalty": params.get("presence_penalty"),
        "enable_reasoner": False,
        "reasoning_effort": None,
        "max_reasoning_tokens": 0,
        "compatibility_type": None,
        "verbosity": None,
        "tier": None,
        "parallel_tool_calls": False,
    }


def embedding_config_json(agent: Agent, endpoint: str | None) -> dict[str, Any]:
    # The SDK types require model and dimension; an agent without embeddings reports "" and 0.
    return {
        "embedding_endpoint_type": "openai",
        "embedding_endpoint": endpoint if agent.embedding else None,
        "embedding_model": agent.embedding or "",
        "embedding_dim": DEFAULT_EMBEDDING_DIM if agent.embedding else 0,
        "embedding_chunk_size": DEFAULT_EMBEDDING_CHUNK_SIZE,
        "handle": model_handle(agent.embedding) if agent.embedding else None,
        "batch_size": 32,
        "azure_endpoint": None,
        "azure_version": None,
        "azure_deployment": None,
    }


def agent_json(live: LiveAgent, endpoint: str | None = None, registry: ToolRegistry | None = None) -> dict[str, Any]:
    """The AgentState of a live agent (message_ids are its in-context messages)."""
    agent = live.agent
    lookup = registry.get if registry is not None else (lambda name: None)
    blocks = [block_json(b) for b in live.blocks]
    return {
        "id": agent.id,
        "name": agent.name,
        "system": agent.system,
        "agent_type": AGENT_TYPE,
        "description": agent.description,
        "llm_config": llm_config_json(agent, endpoint),
        "embedding_config": embedding_config_json(agent, endpoint),
        "model": model_handle(agent.model),
        "model_settings": {"provider_type": "openai", "temperature": agent.llm_params.get("temperature"),
                           "max_output_tokens": agent.llm_params.get("max_tokens"), "parallel_tool_calls": False,
                           "response_format": None},
        "embedding": model_handle(agent.embedding) if agent.embedding else None,
        "compaction_settings": None,
        "pending_approval": None,
        "context_window_limit": agent.context_window_limit,
        "response_format": None,
        "memory": {"agent_type": AGENT_TYPE, "blocks": blocks, "file_blocks": [], "prompt_template": ""},
        "blocks": blocks,
        "tools": [tool_json(lookup(name), name) for name in agent.tools],
        "tool_rules": [dict(rule) for rule in agent.tool_rules],
        "sources": [],
        "tags": list(agent.tags),
        "metadata": dict(agent.metadata),
        "message_ids": [m.id for m in live.messages],
        "message_buffer_autoclear": agent.message_buffer_autoclear,
        "enable_sleeptime": False,
        "identity_ids": [],
        "identities": [],
        "tool_exec_environment_variables": tool_env_json(agent),
        "secrets": tool_env_json(agent),
        "multi_agent_group": None,
        "managed_group": None,
        "last_run_completion": None,
        "last_run_duration_ms": None,
        "last_stop_reason": None,
        "timezone": agent.timezone,
        "max_files_open": None,
        "per_file_view_window_char_limit": None,
        "hidden": None,
        "project_id": None,
        "template_id": None,
        "base_template_id": None,
        "deployment_id": None,
        "entity_id": None,
        "created_by_id": None,
        "last_updated_by_id": None,
        "created_at": iso(agent.created_at),
        "updated_at": iso(agent.updated_at),
    }


def letta_messages(message: Message) -> list[dict[str, Any]]:
    """One stored message as LettaMessages; an assistant turn with tool calls yields one per call."""
    base = {"id": message.id, "date": iso(message.created_at), "name": message.name, "otid": None,
            "sender_id": None, "step_id": None, "is_err": None, "seq_id": message.seq, "run_id": message.run_id}
    if message.role == "user":
        parts = message.metadata.get("parts")
        content: Any = letta_content(parts) if parts else message.content or ""
        return [{**base, "message_type": "user_message", "content": content}]
    if message.role == "system":
        return [{**base, "message_type": "system_message", "content": message.content or ""}]
    if message.role == "tool":
        meta = message.metadata  # the turn marks a failed tool call {"error": true}; Letta imports say is_error
        failed = bool(meta.get("is_error") or meta.get("error")) or meta.get("status") == "error"
        return [{**base, "message_type": "tool_return_message", "tool_return": message.content or "",
                 "status": "error" if failed else "success", "tool_call_id": message.tool_call_id or "",
                 "stdout": None, "stderr": None}]
    out: list[dict[str, Any]] = []
    if message.metadata.get("reasoning"):
        out.append({**base, "message_type": "reasoning_message", "reasoning": message.metadata["reasoning"],
                    "source": "reasoner_model", "signature": None})
    if message.content or not message.tool_calls:
        out.append({**base, "message_type": "assistant_message", "content": message.content or ""})
    approvals = message.metadata.get("approval_tool_calls") or ()
    for call in message.tool_calls or ():
        function = call.get("function") or {}
        wire = {"name": function.get("name", ""), "arguments": function.get("arguments", ""),
                "tool_call_id": call.get("id", "")}
        kind = "approval_request_message" if call.get("id") in approvals else "tool_call_message"
        out.append({**base, "message_type": kind, "tool_call": wire, "tool_calls": [wire]})
    return out


# The engine's own stop reasons that Letta's StopReasonType names differently.
_RUN_STOP_REASONS = {"tool_calls": "requires_approval", "max_tokens": "max_tokens_exceeded",
                     "content_filter": "invalid_llm_response"}


def run_json(run: Run) -> dict[str, Any]:
    usage = {"prompt_tokens": run.usage.get("prompt_tokens", 0),
             "completion_tokens": run.usage.get("completion_tokens", 0)}
    usage["total_tokens"] = run.usage.get("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
    ttft = run.timings.get("ttft_ms")
    total = run.timings.get("total_ms")
    return {
        "id": run.id,
        "agent_id": run.agent_id,
        "status": run.status,
        "stop_reason": _RUN_STOP_REASONS.get(run.stop_reason or "", run.stop_reason),
        "background": False,
        "metadata": dict(run.metadata),
        "request_config": None,
        "steps": run.steps,
        "usage": usage,
        "timings": dict(run.timings),
        "error": run.error,
        "ttft_ns": int(ttft * 1_000_000) if ttft is not None else None,
        "total_duration_ns": int(total * 1_000_000) if total is not None else None,
        "callback_url": None,
        "callback_sent_at": None,
        "callback_status_code": None,
        "callback_error": None,
        "base_template_id": None,
        "created_at": iso(run.created_at),
        "completed_at": iso(run.completed_at),
    }


def letta_content(parts: list[Any]) -> list[Any]:
    """OpenAI content parts as Letta's: text, and images by URL or base64; audio and files as sent."""
    out: list[Any] = []
    for part in parts:
        if isinstance(part, str):
            out.append({"type": "text", "text": part})
            continue
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text"):
            out.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url", "") if isinstance(image, dict) else str(image or "")
            detail = image.get("detail") if isinstance(image, dict) else None
            media, _, data = url[5:].partition(";base64,") if url.startswith("data:") else ("", "", "")
            source: dict[str, Any] = ({"type": "base64", "media_type": media, "data": data, "detail": detail}
                                      if data else {"type": "url", "url": url})
            out.append({"type": "image", "source": source})
        else:
            out.append(part)
    return out
