"""Serve an agent turn: one at a time per agent, streamed as SSE or returned as one completion."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from memory.agents import LiveAgent
from memory.models import Run
from proxy.chat.protocol import DONE, KEEPALIVE, ChatRequest, ChunkEncoder, completion_object, error_event
from proxy.coordination import AgentLocks, LocalAgentLocks, LockTimeout, Release
from proxy.chat.retries import RecentTurns, RecordingSink, replay, turn_key
from proxy.chat.new_input import split_new_input
from proxy.chat.turn import Turn, TurnEnv
from proxy.errors import APIError
from proxy.http import json_response

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class StreamSink:
    """Encodes turn events as SSE bytes onto a queue; `None` ends the stream."""

    def __init__(self, encoder: ChunkEncoder) -> None:
        self.encoder = encoder
        self.queue: asyncio.Queue[bytes | APIError | None] = asyncio.Queue()
        self.started = False
        self.ended = False
        self.spoke = False  # content or a tool call was sent: a disconnect now is a barge-in

    def accepted(self) -> None:
        if not self.started:
            self.started = True
            self.queue.put_nowait(self.encoder.role())

    def content(self, text: str) -> None:
        self.spoke = True
        self.queue.put_nowait(self.encoder.content(text))

    def tool_call_start(self, index: int, call_id: str, name: str) -> None:
        self.spoke = True
        self.queue.put_nowait(self.encoder.tool_call_start(index, call_id, name))

    def tool_call_arguments(self, index: int, fragment: str) -> None:
        self.queue.put_nowait(self.encoder.tool_call_arguments(index, fragment))

    def working(self) -> None:
        self.queue.put_nowait(KEEPALIVE)

    def finish(self, reason: str, usage: dict[str, int]) -> None:
        self.accepted()
        self.ended = True
        self.queue.put_nowait(self.encoder.finish(reason))
        if self.encoder.include_usage:
            self.queue.put_nowait(self.encoder.usage(usage))
        self.queue.put_nowait(DONE)
        self.queue.put_nowait(None)

    def error(self, error: APIError) -> None:
        self.ended = True
        if not self.started:
            self.queue.put_nowait(error)  # nothing sent yet: the client gets a real HTTP status
            return
        self.queue.put_nowait(error_event(error))
        self.queue.put_nowait(DONE)
        self.queue.put_nowait(None)


class CollectSink:
    """Gathers a whole turn for `stream: false`."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.reason: str | None = None
        self.usage: dict[str, int] = {}
        self.failure: APIError | None = None

    def accepted(self) -> None:
        return None

    def content(self, text: str) -> None:
        self.parts.append(text)

    def tool_call_start(self, index: int, call_id: str, name: str) -> None:
        self.calls[index] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}

    def tool_call_arguments(self, index: int, fragment: str) -> None:
        self.calls[index]["function"]["arguments"] += fragment

    def working(self) -> None:
        return None

    def finish(self, reason: str, usage: dict[str, int]) -> None:
        self.reason, self.usage = reason, usage

    def error(self, error: APIError) -> None:
        self.failure = error

    @property
    def ended(self) -> bool:
        return self.reason is not None or self.failure is not None


class TurnRunner:
    """Owns the per-agent turn locks and turns a request into a response."""

    def __init__(self, env: TurnEnv, *, lock_timeout: float, keepalive: float,
                 locks: AgentLocks | None = None) -> None:
        self.env = env
        self.lock_timeout = lock_timeout
        self.keepalive = keepalive
        self.locks: AgentLocks = locks or LocalAgentLocks()
        self.recent = RecentTurns()
        self.active: dict[str, Run] = {}  # runs in flight, by id, until their turn is written

    @contextlib.asynccontextmanager
    async def hold(self, agent_id: str) -> AsyncIterator[None]:
        """Keep turns off an agent while a management call changes its history."""
        release = await self._acquire(agent_id)
        try:
            yield
        finally:
            await release()

    async def _acquire(self, agent_id: str) -> Release:
        try:
            return await self.locks.acquire(agent_id, self.lock_timeout)
        except LockTimeout:
            raise APIError(409, f"agent {agent_id} is busy with another turn; retry when it finishes",
                           code="agent_busy") from None

    async def serve(self, live: LiveAgent, chat: ChatRequest, request: Request | None = None) -> Response:
        key, ttl = turn_key(chat, request.headers if request is not None else {})
        record = self.recent.find(live.id, key)
        if record is not None:
            return await self._respond_with_replay(record, chat, request)
        new_input = split_new_input(chat.messages)
        if not new_input.user and not new_input.tool_results:
            raise APIError(400, "no new input: the request must end with a user message (or tool results) "
                           "after the last assistant message", param="messages", code="no_new_input")
        client_tools = {t["function"]["name"]: t for t in chat.tools}
        clash = sorted(set(client_tools) & set(live.agent.tools))
        if clash:
            raise APIError(400, f"client tools clash with the agent's server tools: {', '.join(clash)}",
                           param="tools", code="tool_name_conflict")
        release = await self._acquire(live.id)
        record = self.recent.find(live.id, key)
        if record is not None:  # the same request finished while we waited for the lock
            await release()
            return await self._respond_with_replay(record, chat, request)
        record = self.recent.start(live.id, key, ttl)
        encoder = ChunkEncoder(chat.model, chat.include_usage, chat.legacy_functions)
        sink: StreamSink | CollectSink = StreamSink(encoder) if chat.stream else CollectSink()
        turn = Turn(self.env, live, chat, new_input, RecordingSink(sink, record), client_tools)
        task = self.env.spawn(self._run_locked(turn, release, record), name=f"turn-{live.id}")
        return await self._respond(task, sink, encoder, request, owner=True)

    async def _respond_with_replay(self, record: Any, chat: ChatRequest, request: Request | None) -> Response:
        encoder = ChunkEncoder(chat.model, chat.include_usage, chat.legacy_functions)
        sink: StreamSink | CollectSink = StreamSink(encoder) if chat.stream else CollectSink()
        task = self.env.spawn(replay(record, sink), name="turn-replay")
        return await self._respond(task, sink, encoder, request, owner=False)

    async def _respond(self, task: asyncio.Task[None], sink: StreamSink | CollectSink, encoder: ChunkEncoder,
                       request: Request | None, owner: bool) -> Response:
        task.add_done_callback(lambda _: _end_unanswered(sink))
        if isinstance(sink, CollectSink):
            await asyncio.wait([task])  # not cancelled with this request: the turn finishes for a retry
            _end_unanswered(sink)
            if sink.failure is not None:
                return sink.failure.response()
            content = "".join(sink.parts)
            calls = [sink.calls[i] for i in sorted(sink.calls)]
            return json_response(completion_object(encoder, content if content or not calls else None, calls or None,
                                                   sink.reason or "stop", sink.usage))
        return await self._stream(task, sink, request, owner)

    async def _run_locked(self, turn: Turn, release: Release, record: Any) -> None:
        self.active[turn.run.id] = turn.run
        try:
            await turn.execute()
        finally:
            record.close()
            await release()
            self.active.pop(turn.run.id, None)

    async def _stream(self, task: asyncio.Task[None], sink: StreamSink, request: Request | None,
                      owner: bool) -> Response:
        # Wait briefly for the upstream to accept, so an upstream refusal becomes a real HTTP status.
        first: bytes | APIError | None
        try:
            first = await asyncio.wait_for(sink.queue.get(), timeout=self.keepalive)
        except TimeoutError:
            sink.accepted()
            first = await sink.queue.get()
        if isinstance(first, APIError):
            return first.response()
        if request is not None and await request.is_disconnected():
            # Gone before hearing a word (a voice client about to retry): the turn finishes for the retry.
            if not owner:
                task.cancel()
            return Response(status_code=499)
        return StreamingResponse(self._events(first, task, sink, owner), media_type="text/event-stream",
                                 headers=SSE_HEADERS)

    async def _events(self, first: bytes | None, task: asyncio.Task[None], sink: StreamSink,
                      owner: bool) -> AsyncIterator[bytes]:
        queue = sink.queue
        heard = False
        try:
            if first is None:
                return
            pending = [first]
            while True:
                # Send everything already queued in one write; wait (with keep-alives) only when idle.
                done = False
                while not queue.empty():
                    item = queue.get_nowait()
                    if item is None:
                        done = True
                        break
                    if isinstance(item, bytes):
                        pending.append(item)
                if pending:
                    spoke = sink.spoke
                    yield pending[0] if len(pending) == 1 else b"".join(pending)
                    heard = heard or spoke
                    pending = []
                if done:
                    return
                try:
                    async with asyncio.timeout(self.keepalive):
                        item = await queue.get()
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if item is None:
                    return
                if isinstance(item, bytes):
                    pending.append(item)
        finally:
            # A client that leaves mid-reply barged in: cancel the upstream, keep what was said. One that
            # leaves before hearing anything is probably retrying: let the turn finish for the retry.
            if not task.done() and (heard or not owner):
                task.cancel()


def _end_unanswered(sink: StreamSink | CollectSink) -> None:
    """A turn task that stopped without finishing or failing its answer still ends the client's stream."""
    if not sink.ended:
        sink.error(APIError(500, "the agent's turn stopped without an answer; send the request again",
                            code="internal_error"))
