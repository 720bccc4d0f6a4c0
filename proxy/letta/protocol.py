"""Letta's messages API on the wire: the LettaRequest we accept, turned into the one turn engine's ChatRequest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, Field

from proxy.api.operations import RequestBody
from proxy.api.wire.messages import LettaMessage
from proxy.chat.protocol import ChatRequest
from proxy.errors import APIError

MessageType = Literal["system_message", "user_message", "assistant_message", "reasoning_message",
                      "hidden_reasoning_message", "tool_call_message", "tool_return_message",
                      "approval_request_message", "approval_response_message"]
MESSAGE_TYPES = frozenset(get_args(MessageType))
# Fields memproxy honours, and fields it accepts only at the value that means "off" (sent by some SDK calls).
_HONOURED = frozenset({"messages", "input", "max_steps", "use_assistant_message", "include_return_message_types",
                       "stream_tokens", "streaming", "include_pings", "background"})
_ONLY_OFF: dict[str, Any] = {"include_compaction_messages": False, "return_logprobs": False,
                             "return_token_ids": False, "top_logprobs": None, "client_tools": None,
                             "client_skills": None, "override_model": None, "override_system": None,
                             "callback_url": None, "enable_thinking": None,
                             "assistant_message_tool_name": "send_message", "assistant_message_tool_kwarg": "message"}
_MESSAGE_FIELDS = frozenset({"role", "content", "name", "otid", "sender_id", "batch_item_id", "group_id", "type"})


@dataclass
class LettaRequest:
    chat: ChatRequest
    max_steps: int | None
    types: frozenset[str] | None  # include_return_message_types; None is all
    stream_tokens: bool
    streaming: bool
    include_pings: bool
    background: bool = False  # a resumable run: its stream's events are kept in Redis (proxy.resumable)


def _refuse(field: str, why: str) -> APIError:
    return APIError(400, f"`{field}` {why}", param=field, code="unsupported_parameter")


def _invalid(field: str, why: str) -> APIError:
    return APIError(400, f"`{field}` {why}", param=field, code="invalid_request")


def parse_letta_request(body: dict[str, Any], agent_id: str, *, stream: bool) -> LettaRequest:
    """Validate a LettaRequest; a field memproxy cannot honour is refused by name, never silently dropped."""
    for name, value in body.items():
        if name in _HONOURED:
            continue
        if name in _ONLY_OFF:
            if value not in (_ONLY_OFF[name], None, False):
                raise _refuse(name, "is not supported by memproxy; leave it unset")
            continue
        raise _refuse(name, "is not a field memproxy's messages API accepts")
    messages = _chat_messages(body)
    max_steps = body.get("max_steps")
    if max_steps is not None and (type(max_steps) is not int or max_steps < 1):
        raise _invalid("max_steps", "must be a positive integer")
    types = body.get("include_return_message_types")
    if types is not None:
        if not isinstance(types, list) or any(t not in MESSAGE_TYPES for t in types):
            raise _invalid("include_return_message_types", f"must be a list of {', '.join(sorted(MESSAGE_TYPES))}")
        types = frozenset(types)
    flags = {}
    for name in ("use_assistant_message", "stream_tokens", "streaming", "include_pings", "background"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise _invalid(name, "must be a boolean")
        flags[name] = bool(value)
    chat = ChatRequest(model=agent_id, messages=messages, stream=True)
    return LettaRequest(chat=chat, max_steps=max_steps, types=types, stream_tokens=flags["stream_tokens"],
                        streaming=stream or flags["streaming"], include_pings=flags["include_pings"],
                        background=flags["background"])


def _chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Letta's MessageCreate list (or `input`) as the OpenAI chat messages the turn engine takes."""
    messages, sugar = body.get("messages"), body.get("input")
    if messages is not None and sugar is not None:
        raise _invalid("input", "cannot be sent together with `messages`")
    if sugar is not None:
        if not isinstance(sugar, (str, list)) or not sugar:
            raise _invalid("input", "must be a non-empty string or list of content parts")
        messages = [{"role": "user", "content": sugar}]
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "must be a non-empty array of messages")
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _invalid(where, "must be an object")
        if message.get("type") == "approval":
            out.extend(_approvals(message, where))
            continue
        if message.get("type") not in (None, "message"):
            raise _refuse(f"{where}.type", "must be \"message\" or \"approval\"")
        unknown = sorted(set(message) - _MESSAGE_FIELDS)
        if unknown:
            raise _refuse(f"{where}.{unknown[0]}", "is not a message field memproxy accepts")
        role = message.get("role")
        if role not in ("user", "system"):
            raise _invalid(f"{where}.role", "must be \"user\" or \"system\"")
        wire: dict[str, Any] = {"role": role, "content": _content(message.get("content"), f"{where}.content")}
        if isinstance(message.get("name"), str):
            wire["name"] = message["name"]
        out.append(wire)
    return out


_APPROVAL_FIELDS = frozenset({"type", "approvals", "approve", "approval_request_id", "reason", "group_id", "otid"})


def _approvals(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """Letta's ApprovalCreate as the tool messages the turn engine takes: content {"approve", "reason"}."""
    unknown = sorted(set(message) - _APPROVAL_FIELDS)
    if unknown:
        raise _refuse(f"{where}.{unknown[0]}", "is not an approval field memproxy accepts")
    items = message.get("approvals")
    if not isinstance(items, list) or not items:
        raise _invalid(f"{where}.approvals", "must be a non-empty list of {type: \"approval\", tool_call_id, approve, "
                       "reason} (the deprecated approve/approval_request_id form is not supported)")
    out: list[dict[str, Any]] = []
    for j, item in enumerate(items):
        at = f"{where}.approvals[{j}]"
        if not isinstance(item, dict) or item.get("type", "approval") != "approval":
            raise _refuse(at, "must be an approval ({type: \"approval\", tool_call_id, approve, reason})")
        call_id, approve, reason = item.get("tool_call_id"), item.get("approve"), item.get("reason")
        if not isinstance(call_id, str) or not call_id:
            raise _invalid(f"{at}.tool_call_id", "must be the id of the tool call waiting for approval")
        if not isinstance(approve, bool):
            raise _invalid(f"{at}.approve", "must be true or false")
        if reason is not None and not isinstance(reason, str):
            raise _invalid(f"{at}.reason", "must be a string")
        decision: dict[str, Any] = {"approve": approve}
        if reason:
            decision["reason"] = reason
        out.append({"role": "tool", "tool_call_id": call_id, "content": orjson.dumps(decision).decode()})
    return out


def _content(content: Any, where: str) -> Any:
    """A string stays a string; Letta's parts become OpenAI's (text, and images by URL or base64)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise _invalid(where, "must be a string or a non-empty list of content parts")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image" and isinstance(part.get("source"), dict):
            source = part["source"]
            if source.get("type") == "url":
                url = source.get("url")
            elif source.get("type") == "base64":
                url = f"data:{source.get('media_type')};base64,{source.get('data')}"
            else:
                raise _refuse(f"{where}[{j}].source.type", "must be \"url\" or \"base64\"")
            image: dict[str, Any] = {"url": url}
            if source.get("detail"):
                image["detail"] = source["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _refuse(f"{where}[{j}]", "must be a text or image part")
    return parts


class MessageCreate(BaseModel):
    """One of Letta's MessageCreate (a user or system message: `role`, `content`), or its ApprovalCreate
    (`type: "approval"`, `approvals: [{type: "approval", tool_call_id, approve, reason}]`)."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["message", "approval"] | None = None
    role: Literal["user", "system"] | None = None
    content: str | list[dict[str, Any]] | None = None
    approvals: list[dict[str, Any]] | None = None
    approve: bool | None = None
    approval_request_id: str | None = None
    reason: str | None = None
    name: str | None = None
    otid: str | None = None
    sender_id: str | None = None
    batch_item_id: str | None = None
    group_id: str | None = None


class LettaRequestBody(RequestBody):
    """LettaRequest: the fields memproxy honours; the others are accepted only at their "off" values."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": False,
                                                 "examples": [{"messages": [{"role": "user", "content": "Hi!"}]}]})

    messages: list[MessageCreate] | None = None
    input: str | list[dict[str, Any]] | None = Field(None, description="shorthand for one user message")
    max_steps: Annotated[int, Field(ge=1)] | None = None
    use_assistant_message: bool | None = None
    include_return_message_types: list[MessageType] | None = None
    stream_tokens: bool | None = None
    streaming: bool | None = None
    include_pings: bool | None = None
    background: bool | None = Field(None, description="a resumable run: its events are kept in Redis and "
                                    "`/v1/runs/{run_id}/stream` resumes it from any process")

    def refuse_unsupported(self, where: str = "") -> None:
        return None  # parse_letta_request names them, with the off values Letta's SDK sends


class CancelRequest(RequestBody):
    run_ids: list[str] | None = None


class StopReason(BaseModel):
    message_type: Literal["stop_reason"]
    stop_reason: str


class UsageStatistics(BaseModel):
    message_type: Literal["usage_statistics"]
    completion_tokens: int
    prompt_tokens: int
    total_tokens: int
    step_count: int
    run_ids: list[str] | None


class LettaResponse(BaseModel):
    messages: list[LettaMessage]
    stop_reason: StopReason
    usage: UsageStatistics
