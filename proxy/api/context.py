"""The context inspector: what the agent's window holds, forced compaction, and the next raw payload."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from memory.compaction import is_summary
from memory.compile import MemoryMetadata, compile_memory_metadata, compile_system_prompt
from memory.context import request_messages, wire_message
from memory.models import Message
from proxy.api.lookup import require_agent, runtime
from proxy.chat.protocol import parse_chat_request
from proxy.chat.new_input import split_new_input
from proxy.chat.request_head import request_head
from proxy.errors import APIError
from proxy.api.wire.service import PreviewRequest, SummarizeRequest
from proxy.http import json_response


async def context_window(request: Request) -> Response:
    rt = runtime(request)
    live = await require_agent(request)
    budget = rt.budget
    counter = budget.counter
    prompt = rt.memory.system_prompt(live)
    core = compile_system_prompt("", live.blocks, live.prompt_meta or MemoryMetadata(today=_today(live.agent.timezone)))
    summary = next((m for m in live.messages if is_summary(m)), None)
    history = [m for m in live.messages if m is not summary]
    tools = rt.registry.schemas(tuple(live.agent.tools))
    window, _ = budget.window_of(live)
    external = compile_memory_metadata(live.prompt_meta) if live.prompt_meta else ""
    measured = budget.measure(live, prompt, [], tools)
    return json_response({
        "context_window_size_max": window,
        "context_window_size_current": measured.total,
        "num_messages": len(live.messages) + 1,  # the system message counts, as in Letta
        "num_archival_memory": live.archival_count,
        "num_recall_memory": await rt.store.count_messages(live.id),
        "num_tokens_external_memory_summary": counter.count_text(external),
        "external_memory_summary": external,
        "num_tokens_system": counter.count_text(live.agent.system),
        "system_prompt": live.agent.system,
        "num_tokens_core_memory": counter.count_text(core),
        "core_memory": core,
        "num_tokens_summary_memory": budget.message_tokens(live, summary) if summary else 0,
        "summary_memory": summary.metadata.get("summary") if summary else None,
        "num_tokens_functions_definitions": counter.count_tools(tools),
        "functions_definitions": tools,
        "num_tokens_messages": sum(budget.message_tokens(live, m) for m in history),
        "messages": [_letta_like(m) for m in history],
    })


async def summarize(request: Request, body: SummarizeRequest) -> Response:
    """Force a compaction now: evict about 30% of the in-context messages into the summary."""
    rt = runtime(request)
    live = await require_agent(request)
    async with rt.turns.hold(live.id) as held:
        live = held or live  # several processes: the agent as of the lock, not a copy older than it
        before = len(live.messages)
        tools = rt.registry.schemas(tuple(live.agent.tools))
        await rt.budget.compact(live, rt.memory.system_prompt(live), [], tools, must_fit=False)
    summary = next((m for m in live.messages if is_summary(m)), None)
    # Letta's CompactionResponse, which its SDKs expect from this route.
    return json_response({"num_messages_before": before, "num_messages_after": len(live.messages),
                          "summary": summary.content or "" if summary is not None else ""})


async def preview_raw_payload(request: Request, body: PreviewRequest) -> Response:
    """The exact JSON the next turn would send upstream for these messages, without calling it."""
    rt = runtime(request)
    live = await require_agent(request)
    raw = body.model_dump()
    raw.setdefault("model", live.id)
    chat = parse_chat_request(raw)
    new_input = split_new_input(chat.messages)
    if not new_input.user:
        raise APIError(400, "`messages` must end with a user message", param="messages", code="no_new_input")
    head, _ = request_head(rt.turns.env, live, chat)
    pending = [Message(id=f"preview-{i}", agent_id=live.id, seq=0, role="user",
                       content=m.get("content") if isinstance(m.get("content"), str) else str(m.get("content")))
               for i, m in enumerate(new_input.user)]
    messages = request_messages(live, rt.memory.system_prompt(live), new_input.instructions)
    messages.extend(wire_message(m) for m in pending)
    payload = {**head, "messages": messages}
    # Round-trip through orjson so the preview is byte-for-byte what the encoder would produce.
    return Response(orjson.dumps(payload), media_type="application/json")


def _letta_like(message: Message) -> dict[str, Any]:
    return {"id": message.id, "role": message.role, **wire_message(message)}


def _today(zone: str) -> Any:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(zone)).date()
