"""Where a turn's events go for an OpenAI client: SSE bytes on a queue, or one collected completion."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from proxy.chat.protocol import DONE, KEEPALIVE, ChunkEncoder, error_event
from proxy.chat.said import ModelOutput
from proxy.errors import APIError


class StreamSink:
    """Encodes turn events as SSE bytes onto a queue; `None` ends the stream.

    While the response waits for the queue with nothing in it, it may lend the sink `direct`: a writer that puts
    content on the wire at once (proxy.http_server.BodyWriter), sparing a wake-up of the responding task per
    token. Anything else that comes takes it back first, so the stream keeps its order.
    """

    def __init__(self, encoder: ChunkEncoder) -> None:
        self.encoder = encoder
        self.queue: asyncio.Queue[bytes | APIError | None] = asyncio.Queue()
        self.started = False
        self.ended = False
        self.spoke = False  # content or a tool call was sent: a disconnect now is a barge-in
        self.spoke_at: float | None = None  # when the first content arrived from the turn
        self.direct: Callable[[bytes], bool] | None = None
        self.direct_at = 0.0  # time.monotonic() of the last write through `direct`

    def _put(self, item: bytes | APIError | None) -> None:
        self.direct = None  # queued from now on, until the response lends the writer again
        self.queue.put_nowait(item)

    def _send(self, data: bytes) -> None:
        direct = self.direct
        if direct is not None and direct(data):
            self.direct_at = time.monotonic()
        else:
            self._put(data)

    def accepted(self) -> None:
        if not self.started:
            self.started = True
            self._put(self.encoder.role())

    def content(self, text: str) -> None:
        if not self.spoke:
            self.spoke, self.spoke_at = True, time.perf_counter()
        self._send(self.encoder.content(text))

    def relay(self, delta: dict[str, Any], logprobs: Any) -> None:
        if not self.spoke:
            self.spoke, self.spoke_at = True, time.perf_counter()
        self._send(self.encoder.relay(delta, logprobs))

    def fingerprint(self, value: str) -> None:
        self.encoder.fingerprint(value)

    def tool_call_start(self, index: int, call_id: str, name: str) -> None:
        if not self.spoke:
            self.spoke, self.spoke_at = True, time.perf_counter()
        self._put(self.encoder.tool_call_start(index, call_id, name))

    def tool_call_arguments(self, index: int, fragment: str) -> None:
        self._put(self.encoder.tool_call_arguments(index, fragment))

    def working(self) -> None:
        self._put(KEEPALIVE)

    def server_tool_call(self, call_id: str, name: str, arguments: str) -> None:
        return None  # server tools stay invisible to OpenAI clients (DESIGN rule 6)

    def tool_return(self, call_id: str, name: str, text: str, ok: bool) -> None:
        return None

    def finish(self, reason: str, usage: dict[str, int]) -> None:
        self.accepted()
        self.ended = True
        self._put(self.encoder.finish(reason))
        if self.encoder.include_usage:
            self.queue.put_nowait(self.encoder.usage(usage))
        self.queue.put_nowait(DONE)
        self.queue.put_nowait(None)

    def error(self, error: APIError) -> None:
        self.ended = True
        if not self.started:
            self._put(error)  # nothing sent yet: the client gets a real HTTP status
            return
        self._put(error_event(error))
        self.queue.put_nowait(DONE)
        self.queue.put_nowait(None)


class CollectSink:
    """Gathers a whole turn for `stream: false`."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.said = ModelOutput()
        self.system_fingerprint: str | None = None
        self.calls: dict[int, dict[str, Any]] = {}
        self.reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.failure: APIError | None = None

    def accepted(self) -> None:
        return None

    def content(self, text: str) -> None:
        self.parts.append(text)

    def relay(self, delta: dict[str, Any], logprobs: Any) -> None:
        if delta.get("content"):
            self.parts.append(delta["content"])
        self.said.add(delta, logprobs)

    def fingerprint(self, value: str) -> None:
        self.system_fingerprint = value

    def tool_call_start(self, index: int, call_id: str, name: str) -> None:
        self.calls[index] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}

    def tool_call_arguments(self, index: int, fragment: str) -> None:
        self.calls[index]["function"]["arguments"] += fragment

    def working(self) -> None:
        return None

    def server_tool_call(self, call_id: str, name: str, arguments: str) -> None:
        return None  # server tools stay invisible to OpenAI clients (DESIGN rule 6)

    def tool_return(self, call_id: str, name: str, text: str, ok: bool) -> None:
        return None

    def finish(self, reason: str, usage: dict[str, Any]) -> None:
        self.reason, self.usage = reason, usage

    def error(self, error: APIError) -> None:
        self.failure = error

    @property
    def ended(self) -> bool:
        return self.reason is not None or self.failure is not None


def end_unanswered(sink: StreamSink | CollectSink) -> None:
    """A turn task that stopped without finishing or failing its answer still ends the client's stream."""
    if not sink.ended:
        sink.error(APIError(500, "the agent's turn stopped without an answer; send the request again",
                            code="internal_error"))
