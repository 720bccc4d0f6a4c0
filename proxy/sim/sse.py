"""Server-sent-event encoding of one streamed chat completion."""

from __future__ import annotations

import orjson

from proxy.sim.protocol import usage
from proxy.sim.script import ReplyPlan

DONE = b"data: [DONE]\n\n"


class ChunkEncoder:
    """Encodes the chunks of one stream; the envelope shared by every chunk is serialised once."""

    __slots__ = ("_envelope", "_head", "_tail", "_usage_null")

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        envelope = orjson.dumps(
            {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        )
        self._envelope = b"data: " + envelope[:-1]
        self._head = self._envelope + b',"choices":[{"index":0,"delta":'
        self._usage_null = b',"usage":null' if include_usage else b""
        self._tail = b',"logprobs":null,"finish_reason":null}]' + self._usage_null + b"}\n\n"

    def delta(self, delta_json: bytes) -> bytes:
        return self._head + delta_json + self._tail

    def role(self) -> bytes:
        return self.delta(b'{"role":"assistant","content":""}')

    def content(self, text: str) -> bytes:
        return self._head + b'{"content":' + orjson.dumps(text) + b"}" + self._tail

    def tool_call_start(self, index: int, call_id: str, name: str) -> bytes:
        call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        return self.delta(orjson.dumps({"tool_calls": [call]}))

    def tool_call_arguments(self, index: int, fragment: str) -> bytes:
        return self.delta(orjson.dumps({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}))

    def finish(self, reason: str) -> bytes:
        return (
            self._head
            + b'{},"logprobs":null,"finish_reason":"'
            + reason.encode()
            + b'"}]'
            + self._usage_null
            + b"}\n\n"
        )

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return (
            self._envelope
            + b',"choices":[],"usage":'
            + orjson.dumps(usage(prompt_tokens, completion_tokens))
            + b"}\n\n"
        )


def argument_fragments(arguments: str) -> list[str]:
    """Split tool-call arguments into up to three fragments (two or more when possible), like real upstreams."""
    if len(arguments) < 2:
        return [arguments]
    size = max(1, -(-len(arguments) // 3))
    return [arguments[i:i + size] for i in range(0, len(arguments), size)]


def encode_stream(plan: ReplyPlan, encoder: ChunkEncoder, include_usage: bool) -> list[bytes]:
    """Every SSE event of the response in order: role, deltas, finish, [usage], [DONE].

    Deltas are events 1 .. `delta_count(plan)`; the app paces those.
    """
    events = [encoder.role()]
    events.extend(encoder.content(piece) for piece in plan.pieces)
    for index, call in enumerate(plan.tool_calls):
        events.append(encoder.tool_call_start(index, call.id, call.name))
        events.extend(encoder.tool_call_arguments(index, f) for f in argument_fragments(call.arguments))
    events.append(encoder.finish(plan.finish_reason))
    if include_usage:
        events.append(encoder.usage(plan.prompt_tokens, plan.completion_tokens))
    events.append(DONE)
    return events


def delta_count(plan: ReplyPlan) -> int:
    """How many delta events `encode_stream` emits between the role chunk and the finish chunk."""
    return len(plan.pieces) + sum(1 + len(argument_fragments(c.arguments)) for c in plan.tool_calls)
