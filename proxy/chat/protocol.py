"""What goes over the wire for /v1/chat/completions: the request we accept and the chunks we send."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from memory.json_bounds import json_fault
from memory.models import new_id
from proxy.errors import APIError
from proxy.limits import MAX_BODY_DEPTH

# Request fields that override the agent's sampling defaults for one request.
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed",
                   "response_format", "presence_penalty", "frequency_penalty", "logit_bias", "parallel_tool_calls",
                   "reasoning_effort")

# Per-request fields the agent route hands to the upstream as sent (README: "Request fields").
FORWARDED_FIELDS = ("user", "service_tier", "prompt_cache_key", "safety_identifier", "store", "prediction",
                    "modalities", "audio", "verbosity", "web_search_options", "logprobs", "top_logprobs")
# Delta fields besides content and tool calls that the model may stream; relayed and kept on the message.
RELAYED_DELTA_FIELDS = ("reasoning_content", "reasoning", "refusal", "annotations", "audio")
# A delta holding only these keys (nearly every token) carries none of the fields above: no per-field lookups.
PLAIN_DELTA_KEYS = frozenset({"role", "content", "tool_calls", "function_call"})

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    user: str | None = None
    # Fields passed upstream unchanged on every step (FORWARDED_FIELDS, OpenAI-shaped `metadata`).
    forwarded: dict[str, Any] = field(default_factory=dict)
    logprobs: bool = False
    # The client spoke the legacy `functions` dialect: answer with `function_call`, not `tool_calls`.
    legacy_functions: bool = False
    # X-Sim-* headers ride along to the upstream so the simulator can be scripted through memproxy.
    upstream_headers: dict[str, str] = field(default_factory=dict)
    received_at: float = field(default_factory=time.perf_counter)  # when memproxy began on the request


# Hand-written on purpose, unlike the management API's pydantic models (proxy/api/wire/): this is the hot path.
# `python -m bench.chat_parse`, a 5-message body with one tool, best of 5 (2026-12-01, 2 shared cores under
# load ~16, so absolute numbers are inflated): the checks below cost ~50 µs vs ~65 µs for an equivalent
# pydantic model (model_validate ~73 µs incl. orjson, model_validate_json ~78 µs), and either way the depth
# walk (json_fault, ~140 µs) is still needed because the body is re-encoded upstream. Converting would add
# cost, not remove it, and the parser must pass unknown fields upstream untouched, which it does by not copying.
def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    """Validate the parts of the body we act on; unknown fields are ignored, never echoed."""
    # The body is re-encoded upstream and its messages stored: it must nest shallowly enough to encode again.
    fault = json_fault(body, MAX_BODY_DEPTH, nul=False)
    if fault is not None:
        raise APIError(400, f"the request body {fault}", code="body_too_deep")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "`model` is required and must be a string", param="model", code="missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "`messages` must be a non-empty array", param="messages", code="invalid_messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise APIError(400, f"messages[{i}] must be an object with a `role`", param=f"messages[{i}]",
                           code="invalid_messages")
        _check_message_fields(message, i)
    n = body.get("n")
    if n is not None and n != 1:
        raise APIError(400, "`n` must be 1 for agent models: an agent has one history", param="n",
                       code="unsupported_parameter")
    stream_options = body.get("stream_options") or {}
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise APIError(400, "`tools` must be an array", param="tools", code="invalid_tools")
    functions = body.get("functions")
    legacy = bool(functions) and not tools
    if legacy:
        # Legacy `functions` clients: treat each as a function tool.
        if not isinstance(functions, list):
            raise APIError(400, "`functions` must be an array", param="functions", code="invalid_tools")
        tools = [{"type": "function", "function": f} for f in functions]
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise APIError(400, f"tools[{i}] must be a function tool with a name", param=f"tools[{i}]",
                           code="invalid_tools")
    tool_choice = body.get("tool_choice")
    if tool_choice is None and body.get("function_call") is not None:
        fc = body["function_call"]
        if not isinstance(fc, str) and not (isinstance(fc, dict) and isinstance(fc.get("name"), str)):
            raise APIError(400, "`function_call` must be a string or an object with a `name`",
                           param="function_call", code="invalid_tools")
        tool_choice = fc if isinstance(fc, str) else {"type": "function", "function": {"name": fc["name"]}}
    sampling = {k: body[k] for k in SAMPLING_FIELDS if body.get(k) is not None}
    forwarded = {k: body[k] for k in FORWARDED_FIELDS if body.get(k) is not None}
    # `metadata` labels stored completions upstream; without `store` it only carries client data (Vapi's
    # CRM fields) that the provider has no use for, so it goes up only beside `store: true`.
    if body.get("store") is True and _openai_metadata(body.get("metadata")):
        forwarded["metadata"] = body["metadata"]
    return ChatRequest(
        model=model,
        messages=messages,
        stream=bool(body.get("stream")),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
        sampling=sampling,
        tools=tools,
        tool_choice=tool_choice,
        user=body.get("user") if isinstance(body.get("user"), str) else None,
        forwarded=forwarded,
        logprobs=body.get("logprobs") is True,
        legacy_functions=legacy,
    )


def _openai_metadata(value: Any) -> bool:
    """OpenAI's `metadata`: at most 16 string pairs. Other shapes (Vapi's call data) stay with memproxy."""
    return (isinstance(value, dict) and 0 < len(value) <= 16
            and all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                    for k, v in value.items()))


# The message fields a turn reads, and the JSON types each may have (None: absent or null).
_MESSAGE_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "content": (str, list), "name": (str,), "tool_call_id": (str,), "tool_calls": (list,), "function_call": (dict,),
}


def _check_message_fields(message: dict[str, Any], i: int) -> None:
    for name, types in _MESSAGE_FIELD_TYPES.items():
        value = message.get(name)
        if value is not None and not isinstance(value, types):
            names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
            kinds = " or ".join(names[t] for t in types)
            raise APIError(400, f"messages[{i}].{name} must be {kinds}", param=f"messages[{i}].{name}",
                           code="invalid_messages")
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict) or not isinstance(call.get("function", {}), dict):
            raise APIError(400, f"messages[{i}].tool_calls must hold tool call objects",
                           param=f"messages[{i}].tool_calls", code="invalid_messages")


class ChunkEncoder:
    """Encodes the SSE events of one response; the constant framing is built once per request."""

    def __init__(self, model: str, include_usage: bool, legacy_functions: bool = False) -> None:
        self.id = "chatcmpl-" + new_id("x")[2:].replace("-", "")
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.legacy_functions = legacy_functions
        self.system_fingerprint: str | None = None
        self._frame()

    def _frame(self) -> None:
        head_fields: dict[str, Any] = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                       "model": self.model}
        if self.system_fingerprint is not None:
            head_fields["system_fingerprint"] = self.system_fingerprint
        head = orjson.dumps(head_fields)[:-1]
        self._prefix = b"data: " + head + b',"choices":[{"index":0,"delta":'
        usage_tail = b',"usage":null' if self.include_usage else b""
        self._suffix = b',"logprobs":null,"finish_reason":null}]' + usage_tail + b"}\n\n"
        self._finish_suffix_tail = b"}]" + usage_tail + b"}\n\n"
        self._usage_prefix = b"data: " + head + b',"choices":[],"usage":'

    def fingerprint(self, value: str) -> None:
        """The upstream's `system_fingerprint`, carried by every chunk from now on."""
        if value != self.system_fingerprint:
            self.system_fingerprint = value
            self._frame()

    def role(self) -> bytes:
        return self._prefix + b'{"role":"assistant","content":""}' + self._suffix

    def content(self, text: str) -> bytes:
        return self._prefix + b'{"content":' + orjson.dumps(text) + b"}" + self._suffix

    def relay(self, delta: dict[str, Any], logprobs: Any) -> bytes:
        """A delta with fields beyond content (reasoning, refusal, annotations, audio), and logprobs if any."""
        return (self._prefix + orjson.dumps(delta) + b',"logprobs":' + orjson.dumps(logprobs)
                + b',"finish_reason":null}]' + self._finish_suffix_tail[2:])

    def tool_call_start(self, index: int, call_id: str, name: str) -> bytes:
        if self.legacy_functions:
            delta: dict[str, Any] = {"function_call": {"name": name, "arguments": ""}}
        else:
            delta = {"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                     "function": {"name": name, "arguments": ""}}]}
        return self._prefix + orjson.dumps(delta) + self._suffix

    def tool_call_arguments(self, index: int, fragment: str) -> bytes:
        if self.legacy_functions:
            delta: dict[str, Any] = {"function_call": {"arguments": fragment}}
        else:
            delta = {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
        return self._prefix + orjson.dumps(delta) + self._suffix

    def finish(self, reason: str) -> bytes:
        if self.legacy_functions and reason == "tool_calls":
            reason = "function_call"
        return (self._prefix + b'{},"logprobs":null,"finish_reason":' + orjson.dumps(reason)
                + self._finish_suffix_tail)

    def usage(self, usage: dict[str, int]) -> bytes:
        return self._usage_prefix + orjson.dumps(usage) + b"}\n\n"


def error_event(error: APIError) -> bytes:
    return b"data: " + orjson.dumps(error.body()) + b"\n\n"


def completion_object(encoder: ChunkEncoder, content: str | None, tool_calls: list[dict[str, Any]] | None,
                      finish_reason: str, usage: dict[str, Any], said: dict[str, Any] | None = None,
                      logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A `chat.completion`; `said` holds the other message fields the model produced (reasoning, refusal...)."""
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if said:
        message.update(said)
    if tool_calls and encoder.legacy_functions:
        message["function_call"] = tool_calls[0]["function"]  # the legacy dialect has one call per message
        finish_reason = "function_call" if finish_reason == "tool_calls" else finish_reason
    elif tool_calls:
        message["tool_calls"] = tool_calls
    out: dict[str, Any] = {
        "id": encoder.id,
        "object": "chat.completion",
        "created": encoder.created,
        "model": encoder.model,
        "choices": [{"index": 0, "message": message,
                     "logprobs": {"content": logprobs} if logprobs is not None else None,
                     "finish_reason": finish_reason}],
        "usage": usage,
    }
    if encoder.system_fingerprint is not None:
        out["system_fingerprint"] = encoder.system_fingerprint
    return out
