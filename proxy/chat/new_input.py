"""What a request adds to an agent's history: the new input, reconciled with what the agent already holds.

Clients resend whole transcripts, retry, drop replies they never heard and answer tool calls late;
these functions decide which of their messages are new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from memory.agents import LiveAgent
from memory.context import content_text
from proxy.errors import APIError


@dataclass
class NewInput:
    """What a request adds to the agent's history."""

    user: list[dict[str, Any]] = field(default_factory=list)
    tool_results: list[dict[str, Any]] = field(default_factory=list)
    instructions: list[dict[str, Any]] = field(default_factory=list)
    last_assistant: int = -1  # index in the request of the answer the new input follows (-1: none)


def split_new_input(messages: list[dict[str, Any]]) -> NewInput:
    """Only what follows the last assistant message is new; system/developer messages are instructions."""
    last_assistant = -1
    for i, message in enumerate(messages):
        if message.get("role") == "assistant":
            last_assistant = i
    new = NewInput(last_assistant=last_assistant)
    for i, message in enumerate(messages):
        role = message["role"]
        if role in ("system", "developer"):
            new.instructions.append({"role": "system", "content": content_text(message.get("content"))})
        elif i > last_assistant:
            if role == "user":
                new.user.append(message)
            elif role in ("tool", "function"):
                new.tool_results.append(message)
    return new


def already_held(live: LiveAgent, texts: list[str]) -> int:
    """How many of the request's leading user messages the agent already stored since its last full answer.

    A retry resends a user turn whose answer never came; after a barge-in the client drops the
    interrupted reply it never heard and resends the turn before it. Either way those messages are
    history the agent holds, and only what follows them is new.
    """
    stored: list[str | None] = []
    for message in reversed(live.messages):
        if message.role == "assistant" and not message.metadata.get("interrupted") and (
                not message.tool_calls or message.metadata.get("client_tool_calls")):
            break  # the last answer the client received
        if message.role == "user":
            stored.append(message.content)
    stored.reverse()
    for k in range(min(len(texts), len(stored)), 0, -1):
        if texts[:k] == stored[-k:]:
            return k
    return 0


def pending_client_calls(live: LiveAgent) -> dict[str, str]:
    """Client tool calls of the last assistant message still waiting for results: id -> tool name."""
    answered: set[str] = set()
    for message in reversed(live.messages):
        if message.role == "tool" and message.tool_call_id:
            answered.add(message.tool_call_id)
        elif message.role == "assistant":
            ids = message.metadata.get("client_tool_calls") or []
            names = {c["id"]: c["function"]["name"] for c in message.tool_calls or []}
            return {i: names.get(i, "") for i in ids if i not in answered}
        elif message.role == "user":
            return {}
    return {}


def pending_approvals(live: LiveAgent) -> dict[str, dict[str, Any]]:
    """Server tool calls of the last assistant message waiting for the client's approval: id -> the call."""
    for message in reversed(live.messages):
        if message.role == "assistant":
            ids = set(message.metadata.get("approval_tool_calls") or ())
            if not ids:
                return {}
            waiting = pending_client_calls(live)
            return {c["id"]: c for c in message.tool_calls or [] if c["id"] in ids and c["id"] in waiting}
        if message.role == "user":
            return {}
    return {}


def approval_decision(content: Any) -> tuple[bool, str | None] | None:
    """(approve, reason) from a tool message's content `{"approve": bool, "reason"?: str}`; None if it is not one."""
    text = content if isinstance(content, str) else content_text(content) if isinstance(content, list) else None
    if not isinstance(text, str) or '"approve"' not in text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("approve"), bool):
        return None
    reason = value.get("reason")
    return value["approve"], reason if isinstance(reason, str) and reason else None


def check_approvals(live: LiveAgent, new: NewInput) -> None:
    """Before a turn starts: every approval answers a call that waits for one, and every waiting call that is
    answered gets an approval object (a 400 otherwise; nothing is written)."""
    waiting = pending_approvals(live)
    pending = pending_client_calls(live)
    for result in new.tool_results:
        call_id = result.get("tool_call_id")
        decision = approval_decision(result.get("content"))
        if call_id in waiting and decision is None:
            raise APIError(400, f"tool call {call_id!r} waits for approval: answer it with a tool message whose "
                           'content is {"approve": true} or {"approve": false, "reason": "..."}',
                           param="messages", code="invalid_approval")
        if call_id not in waiting and decision is not None and call_id not in pending \
                and not answered_since_user(live, call_id):  # answered already: a retry, accepted as a no-op
            raise APIError(400, f"no tool call {call_id!r} of this agent is waiting for approval",
                           param="messages", code="unknown_tool_call")


def answered_since_user(live: LiveAgent, call_id: Any) -> bool:
    """Whether a tool call of the current exchange (since the user last spoke) already has its result."""
    for message in reversed(live.messages):
        if message.role == "user":
            return False
        if message.role == "tool" and message.tool_call_id == call_id:
            return True
    return False
