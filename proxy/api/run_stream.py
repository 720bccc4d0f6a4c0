"""Resume a resumable run from any process: `POST /v1/runs/{run_id}/stream` (Letta's shape), `GET` with
`?starting_after=N`, or the standard `Last-Event-ID: N` header; the events after N, then the live run."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from memory.models import Changes, Run, utcnow
from proxy.api.lookup import is_id, runtime
from proxy.api.wire.messages import RunStreamRequest
from proxy.chat.protocol import error_event
from proxy.chat.serving import SSE_HEADERS
from proxy.errors import APIError, not_found
from proxy.resumable import RunLog, follow, unavailable

_FIELDS = frozenset({"starting_after", "include_pings", "poll_interval", "batch_size"})
_MAX_BATCH = 10000


def _invalid(field: str, why: str) -> APIError:
    return APIError(400, f"`{field}` {why}", param=field, code="invalid_request")


def _count(value: Any, field: str, low: int, high: int | None = None) -> int:
    """An integer in [low, high]: a JSON number, or the text of one (query string, header)."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _invalid(field, "must be an integer") from None
    if type(value) is not int or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise _invalid(field, f"must be an integer {bound}")
    return value


def _options(request: Request, body: dict[str, Any]) -> tuple[int, int]:
    """(starting_after, batch_size). `Last-Event-ID`, when sent, wins: it is what a reconnecting EventSource
    adds to the very URL (and body) it first used."""
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise APIError(400, f"`{unknown[0]}` is not a field of a stream request", param=unknown[0],
                       code="unsupported_parameter")
    query = request.query_params
    for name in query:
        if name not in ("starting_after", "batch_size"):
            raise APIError(400, f"`{name}` is not a parameter of a stream request", param=name,
                           code="unsupported_parameter")
    if body.get("include_pings") is not None and not isinstance(body["include_pings"], bool):
        raise _invalid("include_pings", "must be a boolean")
    poll = body.get("poll_interval")
    if poll is not None and (isinstance(poll, bool) or not isinstance(poll, (int, float)) or poll < 0):
        raise _invalid("poll_interval", "must be a number >= 0")
    raw: Any = body.get("starting_after", query.get("starting_after"))
    header = request.headers.get("last-event-id")
    if header is not None:
        after = _count(header, "Last-Event-ID", 0)
    else:
        after = 0 if raw is None else _count(raw, "starting_after", 0)
    batch_raw: Any = body.get("batch_size", query.get("batch_size"))
    batch = 1000 if batch_raw is None else _count(batch_raw, "batch_size", 1, _MAX_BATCH)
    return after, batch


async def stream_run(request: Request, body: RunStreamRequest | None = None) -> Response:
    """Both methods: the POST's body is already typed (its Operation); the query string and header are read here."""
    run_id: str = request.path_params["run_id"]
    after, batch = _options(request, body.given() if body is not None else {})
    rt = runtime(request)
    runlog: RunLog | None = rt.turns.runlog
    if not is_id("run", run_id):
        raise not_found("run", run_id)
    if runlog is None:
        raise APIError(404, f"run {run_id!r} has no resumable stream: resumable runs need MEMPROXY_REDIS_URL",
                       code="not_found")
    try:
        meta = await runlog.meta(run_id)
        first, last = await runlog.bounds(run_id) if meta else (0, 0)
    except Exception as exc:  # noqa: BLE001 - Redis is where the run lives: say so
        raise unavailable(exc) from None
    if not meta:
        raise APIError(404, f"run {run_id!r} has no resumable stream: it was not started with `background: true` "
                       f"or X-Memproxy-Resumable, or its events expired ({runlog.ttl} s after its last)",
                       code="not_found")
    if after > last:
        raise APIError(400, f"`starting_after` {after} is past the last event of run {run_id} ({last})",
                       param="starting_after", code="invalid_request")
    if first > after + 1:
        raise APIError(410, f"events {after + 1} to {first - 1} of run {run_id} are no longer kept "
                       f"(at most {runlog.max_events} per run); resume from {first - 1} or later",
                       param="starting_after", code="events_trimmed")
    gone = _gone_event(meta.get("surface", "chat"), run_id)

    async def mark_failed() -> None:
        """The store's record of the run says what the resuming client heard."""
        run = Run(id=run_id, agent_id=meta["agent"], status="failed", stop_reason="error",
                  error="the process running the turn stopped before it ended", completed_at=utcnow())
        await rt.memory.commit(Changes(runs=[run]))

    events = follow(runlog, run_id, after, keepalive=rt.turns.keepalive, batch=batch, gone_error=gone,
                    on_failed=mark_failed)
    headers = {**SSE_HEADERS, "X-Memproxy-Run-Id": run_id}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def _gone_event(surface: str, run_id: str) -> bytes:
    """What a resuming client reads when the run's process died: in the run's own surface's error shape."""
    error = APIError(503, f"the process running {run_id} stopped before the run ended; the events above are "
                     "all it published. Send the request again", code="run_interrupted")
    if surface == "letta":
        return b"data: " + orjson.dumps({"message_type": "error_message", "error_type": error.code,
                                         "message": error.message, "detail": None, "run_id": run_id,
                                         "seq_id": None}) + b"\n\n"
    return error_event(error)

