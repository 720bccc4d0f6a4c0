"""The Letta encoder: turn events as Letta's message union, stop reason and usage (the OpenAI one is StreamSink)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from memory.models import new_id, utcnow
from proxy.api.protocol import iso
from proxy.chat.protocol import DONE, KEEPALIVE
from proxy.errors import APIError

# The engine's finish reasons as Letta's StopReasonType ("length" is resolved against max_steps below).
_STOP_REASONS = {"stop": "end_turn", "tool_calls": "requires_approval", "content_filter": "invalid_llm_response"}


def stop_reason(reason: str, steps: int, max_steps: int) -> str:
    if reason == "length":
        return "max_steps" if steps >= max_steps else "max_tokens_exceeded"
    return _STOP_REASONS.get(reason, "end_turn")


class LettaSink:
    """Builds Letta messages from one turn's events and hands each to `emit` (a list, or an SSE queue).

    With `tokens`, assistant and reasoning text go out as chunks sharing one id per message, as Letta's
    token streaming does; otherwise each message goes out whole when its step ends.
    """

    def __init__(self, *, max_steps: int, tokens: bool = False, types: frozenset[str] | None = None,
                 pings: bool = False) -> None:
        self.max_steps = max_steps
        self.tokens = tokens
        self.types = types
        self.pings = pings
        self.run_id: str | None = None
        self.messages: list[dict[str, Any]] = []
        self.started = False
        self.ended = False
        self.stop: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None
        self.failure: APIError | None = None
        self.run: Any = None  # the turn's Run, when this sink is fed by the turn itself rather than a replay
        self.detached = False  # a background run: the client leaving does not stop it
        self._batches = 0  # server tool batches seen: a replay's step count
        self._in_tools = False
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._ids: dict[str, str] = {}  # the id of the message being built, by message type
        self._calls: dict[int, dict[str, Any]] = {}

    # --- where messages go (overridden by the streaming subclass) ---------------------------
    def emit(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def emit_raw(self, data: bytes) -> None:
        return None

    # --- building messages ------------------------------------------------------------------
    def _message(self, kind: str, fresh: bool = True, **fields: Any) -> dict[str, Any]:
        if fresh or kind not in self._ids:
            self._ids[kind] = new_id("message")
        return {"id": self._ids[kind], "date": iso(utcnow()), "name": None, "otid": None, "sender_id": None,
                "step_id": None, "is_err": None, "seq_id": None, "run_id": self.run_id, "message_type": kind,
                **fields}

    def _send(self, message: dict[str, Any]) -> None:
        if self.types is None or message["message_type"] in self.types:
            self.emit(message)

    @property
    def steps(self) -> int:
        return self.run.steps if self.run is not None else self._batches + 1

    def _step_change(self) -> None:
        self._in_tools = False

    def _flush(self) -> None:
        """The step's text is complete: send it whole (step streaming) and start fresh ids for the next step."""
        if not self.tokens:
            if self._reasoning:
                self._send(self._message("reasoning_message", reasoning="".join(self._reasoning),
                                         source="reasoner_model", signature=None))
            if self._text:
                self._send(self._message("assistant_message", content="".join(self._text)))
        self._text, self._reasoning = [], []
        self._ids.pop("assistant_message", None)
        self._ids.pop("reasoning_message", None)

    # --- TurnSink ---------------------------------------------------------------------------
    def accepted(self) -> None:
        self.started = True

    def content(self, text: str) -> None:
        self._step_change()
        if self.tokens:
            self._send(self._message("assistant_message", fresh=False, content=text))
        else:
            self._text.append(text)

    def relay(self, delta: dict[str, Any], logprobs: Any) -> None:
        self._step_change()
        thought = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(thought, str) and thought:
            if self.tokens:
                self._send(self._message("reasoning_message", fresh=False, reasoning=thought,
                                         source="reasoner_model", signature=None))
            else:
                self._reasoning.append(thought)
        text = delta.get("content") or delta.get("refusal")
        if isinstance(text, str) and text:
            self.content(text)

    def fingerprint(self, value: str) -> None:
        return None

    def tool_call_start(self, index: int, call_id: str, name: str) -> None:
        self._step_change()
        self._calls[index] = {"name": name, "arguments": "", "tool_call_id": call_id}

    def tool_call_arguments(self, index: int, fragment: str) -> None:
        self._calls[index]["arguments"] += fragment

    def working(self) -> None:
        if self.pings:
            self.emit({"id": new_id("message"), "date": iso(utcnow()), "message_type": "ping", "run_id": self.run_id})
        else:
            self.emit_raw(KEEPALIVE)

    def server_tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self._flush()
        if not self._in_tools:
            self._batches += 1  # approximate: two batches back to back with no text between count as one
        self._in_tools = True
        wire = {"name": name, "arguments": arguments, "tool_call_id": call_id}
        self._send(self._message("tool_call_message", tool_call=wire, tool_calls=[wire]))

    def tool_return(self, call_id: str, name: str, text: str, ok: bool) -> None:
        self._send(self._message("tool_return_message", tool_return=text, status="success" if ok else "error",
                                 tool_call_id=call_id, stdout=None, stderr=None, name=name))

    def finish(self, reason: str, usage: dict[str, Any]) -> None:
        self._flush()
        for index in sorted(self._calls):  # calls waiting for approval end the turn: Letta shows them as it stops
            wire = self._calls[index]
            self._send(self._message("approval_request_message", tool_call=wire, tool_calls=[wire]))
        self.started = self.ended = True
        self.stop = {"message_type": "stop_reason", "stop_reason": stop_reason(reason, self.steps, self.max_steps)}
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        self.usage = {"message_type": "usage_statistics", "completion_tokens": completion, "prompt_tokens": prompt,
                      "total_tokens": usage.get("total_tokens", prompt + completion), "step_count": self.steps,
                      "run_ids": [self.run_id] if self.run_id else None}
        self.end()

    def error(self, error: APIError) -> None:
        self.ended = True
        self.failure = error
        self.end()

    def end(self) -> None:
        return None

    def response(self) -> dict[str, Any]:
        """The LettaResponse of a whole turn."""
        return {"messages": self.messages, "stop_reason": self.stop, "usage": self.usage}


class LettaStreamSink(LettaSink):
    """Letta's SSE: `data: <message>` per message, then stop_reason, usage_statistics and `data: [DONE]`."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.queue: asyncio.Queue[bytes | APIError | None] = asyncio.Queue()
        self.opened = False

    def accepted(self) -> None:
        super().accepted()
        if not self.opened:
            self.opened = True
            self.queue.put_nowait(b"")  # the upstream accepted: the response can start with a 200

    def emit(self, message: dict[str, Any]) -> None:
        self.accepted()
        self.queue.put_nowait(b"data: " + orjson.dumps(message) + b"\n\n")

    def emit_raw(self, data: bytes) -> None:
        self.queue.put_nowait(data)

    def end(self) -> None:
        if self.failure is not None:
            if not self.opened:
                self.queue.put_nowait(self.failure)  # nothing sent yet: the client gets a real HTTP status
                self.queue.put_nowait(None)
                return
            error = self.failure
            self.emit({"message_type": "error_message", "error_type": error.code or "internal_error",
                       "message": error.message, "detail": None, "run_id": self.run_id or "", "seq_id": None})
        else:
            self.emit(self.stop or {})
            self.emit(self.usage or {})
        self.queue.put_nowait(DONE)
        self.queue.put_nowait(None)
