"""Serve an agent turn: one at a time per agent, streamed as SSE or returned as one completion."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, AsyncIterator, cast

from starlette.requests import Request
from starlette.responses import Response

from memory.agents import LiveAgent
from proxy.asgi_stream import WRITE_NOW, ClientWatch, EventStream, LastChunk
from memory.context import inline_bytes
from memory.models import Run, new_id
from proxy.chat.protocol import KEEPALIVE, ChatRequest, ChunkEncoder, completion_object, error_event
from proxy.coordination import AgentLocks, CoordinationDown, Lease, LocalAgentLocks, LockTimeout, Release
from proxy.chat import fleet
from proxy.chat.retries import RecentTurns, RecordingSink, TurnRecord, replay, turn_key
from proxy.chat.new_input import check_approvals, split_new_input
from proxy.chat.sinks import CollectSink, StreamSink, end_unanswered
from proxy.chat.turn import Turn, TurnEnv
from proxy.api.protocol import run_json
from proxy.errors import APIError
from proxy.http import json_response
from proxy.metrics import server_timing
from proxy.protocols import TurnSink
from proxy.resumable import KEEPALIVE_LINE, Publisher, RunLog, TeeQueue, open_resumable, wants_resumable

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_IDLE = object()  # put on a stream's queue when it waited a keep-alive interval for its next event


@dataclasses.dataclass
class Launched:
    """A turn started for a request (`turn` is None when the request replays an earlier one)."""

    task: asyncio.Task[None]
    turn: Turn | None
    record: TurnRecord


class TurnRunner:
    """Owns the per-agent turn locks and turns a request into a response."""

    def __init__(self, env: TurnEnv, *, lock_timeout: float, keepalive: float,
                 locks: AgentLocks | None = None, max_inline_bytes: int = 20 * 1024 * 1024) -> None:
        self.env = env
        self.max_inline_bytes = max_inline_bytes
        self.lock_timeout = lock_timeout
        self.keepalive = keepalive
        self.locks: AgentLocks = locks or LocalAgentLocks()
        self.leases = fleet.Leases(self.locks, env.memory, lock_timeout)
        self.recent = RecentTurns()
        self.active: dict[str, Run] = {}  # runs in flight, by id, until their turn is written
        self.tasks: dict[str, asyncio.Task[None]] = {}  # ...and the tasks running them, for cancelling
        self.cancelling: set[str] = set()
        self.runlog: RunLog | None = None  # resumable runs' events, when Redis is configured

    def hold(self, agent_id: str) -> contextlib.AbstractAsyncContextManager[LiveAgent | None]:
        """Keep turns off an agent while a management call changes its history; yields the agent as of the lock."""
        return self.leases.hold(agent_id)

    async def _lease(self, agent_id: str, **kw: Any) -> Lease:
        return await self.leases.take(agent_id, **kw)

    async def _acquire(self, agent_id: str) -> Release:
        lease = await self._lease(agent_id)
        return lambda: self._release(lease, bump=False)

    async def _release(self, lease: Lease, **kw: Any) -> None:
        await self.leases.give(lease, **kw)

    async def serve(self, live: LiveAgent, chat: ChatRequest, request: Request | None = None,
                    headers: Mapping[str, str] | None = None) -> Response:
        """`headers`: the request's headers a turn reads, with lower-case names (default: all of the request's)."""
        if headers is None:
            headers = request.headers if request is not None else {}
        encoder = ChunkEncoder(chat.model, chat.include_usage, chat.legacy_functions)
        sink: StreamSink | CollectSink = StreamSink(encoder) if chat.stream else CollectSink()
        publisher = None
        if request is not None and wants_resumable(headers):
            if not chat.stream:
                raise APIError(400, "a resumable run must be streamed: send `stream: true` with "
                               "X-Memproxy-Resumable", param="stream", code="resumable_needs_stream")
            publisher = await open_resumable(self.runlog, live.id, "chat", lambda error, _: error_event(error),
                                             param="X-Memproxy-Resumable")
            sink.queue = TeeQueue(publisher)  # type: ignore[union-attr]
        started = await self.launch(live, chat, sink, headers, publisher=publisher)
        timing = _TurnTiming(chat, started.turn, started.record)
        return await self._respond(started.task, sink, encoder, request, owner=started.turn is not None,
                                   timing=timing, detached=publisher is not None and started.turn is not None)

    async def launch(self, live: LiveAgent, chat: ChatRequest, sink: TurnSink, headers: Mapping[str, str], *,
                     scope: str = "", max_steps: int | None = None, publisher: Publisher | None = None) -> Launched:
        """Start the turn a request asks for, feeding `sink`; a repeated request replays the turn it repeats.

        Every surface (OpenAI's chat completions, Letta's messages) comes through here: one loop, many encoders.
        `scope` keeps one surface's retries from replaying another's turn into the wrong encoder. With a
        `publisher` the run is resumable: its events go to Redis, and it is not registered when no turn starts.
        """
        try:
            started = await self._launch(live, chat, sink, headers, scope, max_steps, publisher)
        except BaseException:
            if publisher is not None:
                await publisher.discard()
            raise
        if publisher is not None and started.turn is None:
            # A replay of an earlier turn: its events are not this run's (the original keeps its own log).
            sink.queue = asyncio.Queue()  # type: ignore[attr-defined]  # a resumable run's sink streams from a queue
            await publisher.discard()
        return started

    async def _launch(self, live: LiveAgent, chat: ChatRequest, sink: TurnSink, headers: Mapping[str, str], scope: str,
                      max_steps: int | None, publisher: Publisher | None) -> Launched:
        new_input = split_new_input(chat.messages)
        key, ttl = turn_key(chat, headers, new_input)
        key = scope + key
        record = self.recent.find(live.id, key)
        if record is not None:
            return Launched(self.env.spawn(replay(record, sink), name="turn-replay"), None, record)
        if not new_input.user and not new_input.tool_results:
            raise APIError(400, "no new input: the request must end with a user message (or tool results) "
                           "after the last assistant message", param="messages", code="no_new_input")
        for message in (*new_input.user, *new_input.tool_results):
            size = inline_bytes(message.get("content"))
            if size > self.max_inline_bytes:
                raise APIError(413, f"a message carries {size} bytes of inline data (images, audio, files); an agent "
                               f"stores at most {self.max_inline_bytes} per message: send a URL instead",
                               param="messages", code="inline_data_too_large")
        client_tools = {t["function"]["name"]: t for t in chat.tools}
        clash = sorted(set(client_tools) & set(live.agent.tools))
        if clash:
            raise APIError(400, f"client tools clash with the agent's server tools: {', '.join(clash)}",
                           param="tools", code="tool_name_conflict")
        waited, arrived = time.perf_counter(), time.time()
        run = Run(id=new_id("run"), agent_id=live.id)
        shared = self.locks.shared
        # Several processes: the run is visible from all of them while it runs, and the request's
        # idempotency record (read and, if absent, claimed in the same round trip) is shared too.
        lease = await self._lease(live.id, idem_key=key if shared else None, run=run_json(run) if shared else None,
                                  record=fleet.running_record(run.id), record_ttl=self.leases.record_ttl(ttl))
        self.env.metrics.lock_wait.observe(time.perf_counter() - waited)
        if publisher is not None:
            try:
                await publisher.bind_lock()  # a resumer can tell from the lock when this process is gone
            except BaseException:
                await self._release(lease, bump=False)
                raise
        record = self.recent.find(live.id, key)
        if record is not None:  # the same request finished while we waited for the lock
            await self._release(lease, bump=False)
            return Launched(self.env.spawn(replay(record, sink), name="turn-replay"), None, record)
        if shared:
            try:
                started = await self.leases.shared_start(live, lease, key, ttl, run, arrived)
            except BaseException:
                await self._release(lease, bump=False)
                raise
            if isinstance(started, TurnRecord):  # completed by another process: replayed from the store
                await self._release(lease, bump=False)
                return Launched(self.env.spawn(replay(started, sink), name="turn-replay"), None, started)
            live = started
        try:
            check_approvals(live, new_input)  # under the lock: the calls waiting for approval cannot change now
        except APIError:
            await self._release(lease, bump=False)
            raise
        record = self.recent.start(live.id, key, ttl)
        env = self.env if max_steps is None else dataclasses.replace(self.env, max_steps=max_steps)
        if publisher is not None:
            run = dataclasses.replace(run, id=publisher.run_id)
        turn = Turn(env, live, chat, new_input, RecordingSink(sink, record), client_tools, run=run)
        record.run_id = turn.run.id
        self.active[turn.run.id] = turn.run  # visible to GET /v1/runs/{id} from the moment it is promised
        task = self.env.spawn(self._run_locked(turn, lease, record, ttl, publisher), name=f"turn-{live.id}")
        self.tasks[turn.run.id] = task
        return Launched(task, turn, record)

    def cancel(self, agent_id: str, run_ids: list[str] | None) -> dict[str, str]:
        """Cancel an agent's turns in flight (all, or those named); each keeps what it said, as a barge-in does."""
        out: dict[str, str] = {}
        for run_id, run in list(self.active.items()):
            if run.agent_id != agent_id or (run_ids is not None and run_id not in run_ids):
                continue
            task = self.tasks.get(run_id)
            if task is not None and not task.done() and run.status == "running" and run_id not in self.cancelling:
                self.cancelling.add(run_id)
                # Queued behind the task's first step, so the cancel lands inside its try and releases the lock.
                asyncio.get_running_loop().call_soon(task.cancel)
                out[run_id] = "cancelled"
        for run_id in run_ids or ():
            out.setdefault(run_id, "not running")
        return out

    async def _respond(self, task: asyncio.Task[None], sink: StreamSink | CollectSink, encoder: ChunkEncoder,
                       request: Request | None, owner: bool, timing: _TurnTiming, detached: bool = False) -> Response:
        task.add_done_callback(lambda _: end_unanswered(sink))
        if isinstance(sink, CollectSink):
            await asyncio.wait([task])  # not cancelled with this request: the turn finishes for a retry
            end_unanswered(sink)
            if sink.failure is not None:
                return timing.stamp(sink.failure.response())
            content = "".join(sink.parts)
            calls = [sink.calls[i] for i in sorted(sink.calls)]
            if sink.system_fingerprint is not None:
                encoder.fingerprint(sink.system_fingerprint)
            empty = None if calls or sink.said.refusal else content  # "" for an empty answer, null beside calls
            if timing.before_upstream is not None:
                self.env.metrics.added_ttft_agent.observe(timing.before_upstream)
            return timing.stamp(json_response(completion_object(
                encoder, content or empty, calls or None, sink.reason or "stop", sink.usage,
                sink.said.message_fields(), sink.said.logprobs)))
        return await self._stream(task, sink, request, owner, timing, detached)

    async def _run_locked(self, turn: Turn, lease: Lease, record: TurnRecord, ttl: float,
                          publisher: Publisher | None = None) -> None:
        self.env.metrics.turns_in_flight.inc()
        try:
            await turn.execute()
        finally:
            self.env.metrics.turns_in_flight.dec()
            record.close()
            shared = self.locks.shared
            if shared and self.env.budget is not None:
                # A compaction the turn started runs under its lock: once across the fleet, fenced like the turn.
                await self.env.budget.quiesce(turn.live)
            if publisher is not None:
                await publisher.drain()  # every event is in Redis before the lock says the turn is over
            await self._release(lease, bump=shared, record=fleet.finished_record(turn.run, ttl) if shared else None,
                                record_ttl=max(ttl, 5.0), meta=fleet.meta_json(turn.live) if shared else None)
            # Only now: while the fence is set, our own announcement (which may outrun the release's answer)
            # does not drop the copy the release is about to mark current.
            turn.live.fence = 0
            self.active.pop(turn.run.id, None)
            self.tasks.pop(turn.run.id, None)
            self.cancelling.discard(turn.run.id)

    async def _stream(self, task: asyncio.Task[None], sink: StreamSink, request: Request | None,
                      owner: bool, timing: _TurnTiming, detached: bool) -> Response:
        # Watching from now on tells, once the first chunk is in, whether the client is still there.
        watch = ClientWatch(request.receive) if request is not None else None
        try:
            # Wait briefly for the upstream to accept, so an upstream refusal becomes a real HTTP status; past
            # that the stream starts with its role chunk. A timer, not wait_for: no task per turn.
            started = asyncio.get_running_loop().call_later(self.keepalive, sink.accepted)
            try:
                first: bytes | APIError | None = await sink.queue.get()
            finally:
                started.cancel()
        except BaseException:
            if watch is not None:
                watch.close()
            raise
        if isinstance(first, APIError) or (watch is not None and watch.gone):
            if watch is not None:
                watch.close()
            if isinstance(first, APIError):
                return timing.stamp(first.response())
            # Gone before hearing a word (a voice client about to retry): the turn finishes for the retry.
            if not owner:
                task.cancel()
            return Response(status_code=499)
        # Content may go out from the turn's own task when the server offers a writer for it (proxy.http_server):
        # not for a resumable run, whose every event goes through Redis first.
        writer = None
        if request is not None and not detached and isinstance(sink, StreamSink) and type(sink.queue) is asyncio.Queue:
            writer = request.scope.get("extensions", {}).get(WRITE_NOW)
        # Headers given whole: setting them on the built response rescans its header list per name.
        return EventStream(self._events(first, task, sink, owner, timing, detached, writer),
                           media_type="text/event-stream", headers={**SSE_HEADERS, **timing.headers()}, watch=watch)

    async def _events(self, first: bytes | None, task: asyncio.Task[None], sink: StreamSink,
                      owner: bool, timing: _TurnTiming, detached: bool = False,
                      writer: Callable[[bytes], bool] | None = None) -> AsyncIterator[bytes]:
        queue = sink.queue
        loop = asyncio.get_running_loop()
        heard = False
        try:
            if first is None:
                return
            pending = [first]
            quiet_for = self.keepalive  # silence after which a keep-alive goes out
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
                    if spoke and not heard and sink.spoke_at is not None and timing.before_upstream is not None:
                        # Added TTFT: our time before the upstream call, plus from its first token to this write.
                        added = timing.before_upstream + time.perf_counter() - sink.spoke_at
                        self.env.metrics.added_ttft_agent.observe(added)
                    batch = pending[0] if len(pending) == 1 else b"".join(pending)
                    yield LastChunk(batch) if done else batch
                    heard = heard or spoke
                    pending = []
                if done:
                    return
                # Idle for a keep-alive interval: a marker lands in the queue (past a TeeQueue's publisher: it is
                # not an event of the run). Cheaper than asyncio.timeout; a marker that lost the race to a
                # real item is skipped by the drain above.
                idle = loop.call_later(quiet_for, asyncio.Queue.put_nowait, cast("asyncio.Queue[object]", queue), _IDLE)
                quiet_for = self.keepalive
                if writer is not None and heard and queue.empty():
                    sink.direct = writer  # nothing queued, nothing held: the turn may write content itself now
                try:
                    item = await queue.get()
                finally:
                    sink.direct = None
                    idle.cancel()
                if item is _IDLE:
                    if writer is not None:
                        quiet = time.monotonic() - sink.direct_at
                        if quiet < self.keepalive:  # the turn wrote tokens meanwhile: not silent for that long
                            quiet_for = self.keepalive - quiet
                            continue
                    yield KEEPALIVE_LINE if detached else KEEPALIVE
                    continue
                if item is None:
                    return
                if isinstance(item, bytes):
                    pending.append(item)
        finally:
            # A client that leaves mid-reply barged in: cancel the upstream, keep what was said. One that
            # leaves before hearing anything is probably retrying: let the turn finish for the retry.
            # A resumable run is detached from its client: it goes on for whoever resumes it.
            if not task.done() and (heard or not owner) and not detached:
                task.cancel()


class _TurnTiming:
    """The run id and `Server-Timing` of an agent response (a replay has no upstream call of its own)."""

    __slots__ = ("chat", "turn", "record")

    def __init__(self, chat: ChatRequest, turn: Turn | None, record: TurnRecord | None = None) -> None:
        self.chat, self.turn, self.record = chat, turn, record

    @property
    def before_upstream(self) -> float | None:
        sent = self.turn.sent_at if self.turn is not None else None
        return None if sent is None else sent - self.chat.received_at

    def stamp(self, response: Response) -> Response:
        for name, value in self.headers().items():
            response.headers[name] = value
        return response

    def headers(self) -> dict[str, str]:
        turn = self.turn
        out: dict[str, str] = {}
        run_id = turn.run.id if turn is not None else getattr(self.record, "run_id", None)
        if run_id:
            out["X-Memproxy-Run-Id"] = run_id
        if turn is None or turn.sent_at is None or self.chat.stream:
            # A stream's headers go out with its first chunk: our time until the upstream call, then the upstream's.
            sent, answered = (turn.sent_at, turn.answered_at) if turn is not None else (None, None)
            out["Server-Timing"] = server_timing(self.chat.received_at, sent, answered)
        else:
            # A whole answer: everything but the upstream calls was ours (tools and the commit included).
            total = (time.perf_counter() - self.chat.received_at) * 1000
            upstream = turn.upstream_s * 1000
            out["Server-Timing"] = f"memproxy;dur={total - upstream:.3f}, upstream;dur={upstream:.3f}"
        return out
