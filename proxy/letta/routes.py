"""Letta's messages API: send, stream, run in the background and cancel, on the chat-completions turn engine."""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from proxy import logs
from proxy.api.lookup import require_agent, runtime
from proxy.api.protocol import letta_messages, run_json
from proxy.api.operations import Operation, routes_of
from proxy.api.wire.messages import Run
from proxy.chat.protocol import KEEPALIVE
from proxy.chat.serving import SSE_HEADERS, Launched
from proxy.errors import APIError
from proxy.http import json_response
from proxy.letta.background import BackgroundStreamSink
from proxy.letta.background import error_bytes as background_error
from proxy.letta.encoder import LettaSink, LettaStreamSink
from proxy.letta.protocol import CancelRequest, LettaRequest, LettaRequestBody, LettaResponse, parse_letta_request
from proxy.resumable import KEEPALIVE_LINE, TeeQueue, open_resumable

_SCOPE = "letta:"
_RECENT = 500  # a Letta request never replays a chat-completions turn into the wrong encoder


async def _start(request: Request, sink_type: type[LettaSink], *, stream: bool, body: dict[str, Any],
                 background: bool = False) -> tuple[LettaRequest, LettaSink, Launched]:
    received = time.perf_counter()
    rt = runtime(request)
    live = await require_agent(request)
    logs.agent_id.set(live.id)
    letta = parse_letta_request(body, live.id, stream=stream)
    letta.chat.upstream_headers = {k: v for k, v in request.headers.items() if k.startswith("x-sim-")}
    letta.chat.received_at = received
    publisher = None
    if letta.background or background:
        if not stream and not background:
            raise APIError(400, "`background` runs are streamed: send it to .../messages/stream (or use "
                           ".../messages/async)", param="background", code="invalid_request")
        sink_type = BackgroundStreamSink
        publisher = await open_resumable(rt.turns.runlog, live.id, "letta", background_error, param="background")
    sink = sink_type(max_steps=letta.max_steps or rt.turns.env.max_steps, tokens=letta.stream_tokens,
                     types=letta.types, pings=letta.include_pings)
    if publisher is not None:
        sink.run_id = publisher.run_id
        sink.queue = TeeQueue(publisher)  # type: ignore[attr-defined]
    started = await rt.turns.launch(live, letta.chat, sink, request.headers, scope=_SCOPE, max_steps=letta.max_steps,
                                    publisher=publisher)
    sink.detached = publisher is not None and started.turn is not None
    sink.run_id = started.record.run_id
    sink.run = started.turn.run if started.turn is not None else None
    return letta, sink, started


def _given(body: LettaRequestBody) -> dict[str, Any]:
    """What the client sent, unknown fields included: parse_letta_request refuses those by name."""
    return body.model_dump(exclude_unset=True)


async def send_message(request: Request, body: LettaRequestBody) -> Response:
    raw = _given(body)
    if body.streaming is True:  # the SDK's `create(streaming=True)` posts here and reads SSE
        return await _stream(request, raw)
    _, sink, started = await _start(request, LettaSink, stream=False, body=raw)
    await asyncio.wait([started.task])  # not cancelled with this request: the turn finishes for a retry
    if sink.failure is not None or not sink.ended:
        failure = sink.failure or APIError(500, "the agent's turn stopped without an answer; send the request again",
                                           code="internal_error")
        return failure.response()
    stored = await _stored(request, sink)
    if stored is not None:
        sink.messages = stored
    return _stamped(json_response(sink.response()), sink)


async def _stored(request: Request, sink: LettaSink) -> list[dict[str, Any]] | None:
    """The turn's messages as stored, so their ids and dates are the ones `GET .../messages` shows later."""
    rt = runtime(request)
    agent_id = request.path_params["agent_id"]
    await rt.memory.settled(agent_id)
    # A turn is at most a few messages per step: the newest few hundred always hold it whole.
    recent = await rt.store.list_messages(agent_id, limit=_RECENT, ascending=False)
    mine = [m for m in reversed(recent) if m.run_id == sink.run_id and m.role != "user"]
    if not mine or len(recent) == _RECENT and recent[-1].run_id == sink.run_id:
        return None  # longer than the window read (or not found): the encoder's own messages stand
    out = [part for message in mine for part in letta_messages(message)]
    return [m for m in out if sink.types is None or m["message_type"] in sink.types]


async def stream_message(request: Request, body: LettaRequestBody) -> Response:
    return await _stream(request, _given(body))


async def _stream(request: Request, body: dict[str, Any]) -> Response:
    _, sink, started = await _start(request, LettaStreamSink, stream=True, body=body)
    assert isinstance(sink, LettaStreamSink)
    keepalive = runtime(request).turns.keepalive
    started.task.add_done_callback(lambda _: _end_unanswered(sink))
    try:
        first = await asyncio.wait_for(sink.queue.get(), timeout=keepalive)
    except TimeoutError:
        sink.accepted()
        first = await sink.queue.get()
    if isinstance(first, APIError):
        return _stamped(first.response(), sink)
    return _stamped(StreamingResponse(_events(first, sink, started, keepalive), media_type="text/event-stream",
                                      headers=SSE_HEADERS), sink)


async def _events(first: bytes | None, sink: LettaStreamSink, started: Launched,
                  keepalive: float) -> AsyncIterator[bytes]:
    item: bytes | APIError | None = first
    try:
        while item is not None:
            if isinstance(item, bytes) and item:
                yield item
            try:
                async with asyncio.timeout(keepalive):
                    item = await sink.queue.get()
            except TimeoutError:
                yield KEEPALIVE_LINE if sink.detached else KEEPALIVE
                item = b""
    finally:
        # A client that leaves mid-stream stops the turn, keeping what was said (as on chat completions).
        # A background run is detached from its client: it goes on for whoever resumes it.
        if not started.task.done() and started.turn is not None and not sink.detached:
            started.task.cancel()


def _end_unanswered(sink: LettaSink) -> None:
    if not sink.ended:
        sink.error(APIError(500, "the agent's turn stopped without an answer; send the request again",
                            code="internal_error"))


def _stamped(response: Response, sink: LettaSink) -> Response:
    if sink.run_id:
        response.headers["X-Memproxy-Run-Id"] = sink.run_id
    return response


async def send_message_async(request: Request, body: LettaRequestBody) -> Response:
    """Start the turn and answer at once with its run; `GET /v1/runs/{id}` follows it to the end."""
    rt = runtime(request)
    # With Redis, an async run is a background run: `GET /v1/runs/{id}/stream` follows it from any process.
    _, sink, started = await _start(request, LettaSink, stream=False, body=_given(body),
                                    background=rt.turns.runlog is not None)
    run = sink.run or rt.turns.active.get(sink.run_id or "")
    if run is None:  # a repeat of a turn that already ended: its stored run
        await rt.memory.settled()
        run = await rt.store.get_run(sink.run_id or "")
    if run is None:
        raise APIError(500, "the run of this request could not be found", code="internal_error")
    out = run_json(run)
    out["background"] = True
    return _stamped(json_response(out), sink)


async def cancel_messages(request: Request, body: CancelRequest) -> Response:
    """Cancel the agent's turns in flight (all, or `run_ids`): {run_id: "cancelled" | "not running"}."""
    rt = runtime(request)
    live = await require_agent(request)
    return json_response(rt.turns.cancel(live.id, body.run_ids))


_AGENT = "/v1/agents/{agent_id}"

_TAGS = ("messages",)
_SEND = {"body": LettaRequestBody, "invalid_status": 400, "errors": (400, 404, 409, 502)}

operations = [
    # With `streaming: true` the same route answers as /stream does (the SDK's `create(streaming=True)`).
    Operation("POST", _AGENT + "/messages", send_message, "Send messages to an agent and wait for its answer",
              _TAGS, response=LettaResponse, stream=True, **_SEND),  # type: ignore[arg-type]
    Operation("POST", _AGENT + "/messages/stream", stream_message, "Send messages; the answer streams as SSE",
              _TAGS, stream=True, **_SEND),  # type: ignore[arg-type]
    Operation("POST", _AGENT + "/messages/async", send_message_async, "Start a turn in the background",
              _TAGS, response=Run, **_SEND),  # type: ignore[arg-type]
    Operation("POST", _AGENT + "/messages/cancel", cancel_messages, "Cancel the agent's turns in flight", _TAGS,
              body=CancelRequest, body_required=False, invalid_status=400, response=dict[str, str]),
]
routes = routes_of(operations)
