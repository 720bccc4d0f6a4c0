"""`python -m bench.chat_parse`: the hand-written chat-completions parser against a pydantic model of the
same checks, on one typical body (why the hot route keeps its own parser; see proxy/chat/protocol.py)."""

from __future__ import annotations

import timeit
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from memory.json_bounds import json_fault
from proxy.chat.protocol import parse_chat_request
from proxy.limits import MAX_BODY_DEPTH

BODY = orjson.dumps({
    "model": "agent-6c1f0b7e-8f4e-4d5e-9a51-0f6f5b6c9d2a", "stream": True, "temperature": 0.7,
    "stream_options": {"include_usage": True},
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What's the weather like in Paris today? I am planning a walk."},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 18, \"sky\": \"clear\"}"},
        {"role": "user", "content": [{"type": "text", "text": "Great, and tomorrow?"}]},
    ],
    "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather for a city",
                                                "parameters": {"type": "object", "properties": {
                                                    "city": {"type": "string"}}, "required": ["city"]}}}],
})


class _Function(BaseModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _Tool(BaseModel):
    type: Literal["function"]
    function: _Function


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class _ChatBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: Literal[1] | None = None
    tools: list[_Tool] | None = None
    tool_choice: Any = None
    user: str | None = None


def _per_body(fn: Any, number: int = 5_000) -> float:
    """Microseconds per call, the best of five runs (the least disturbed by other load)."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parsed = orjson.loads(BODY)
    rows = (("orjson.loads alone", lambda: orjson.loads(BODY)),
            ("depth walk alone (json_fault)", lambda: json_fault(parsed, MAX_BODY_DEPTH, nul=False)),
            ("hand-written: loads + parse_chat_request", lambda: parse_chat_request(orjson.loads(BODY))),
            ("pydantic: loads + model_validate", lambda: _ChatBody.model_validate(orjson.loads(BODY))),
            ("pydantic: model_validate_json", lambda: _ChatBody.model_validate_json(BODY)))
    for name, fn in rows:
        print(f"{name:42s} {_per_body(fn):7.1f} µs per body")


if __name__ == "__main__":
    main()
