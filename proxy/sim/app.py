"""The simulator's ASGI app: chat completions, embeddings, models and the `/sim/*` control endpoints.

Raw ASGI rather than Starlette: the simulator is the baseline of every benchmark, so it stays lean.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from proxy.sim.config import SimConfig
from proxy.sim.embed import embed_text, embedding_inputs, encode_vector
from proxy.sim.options import Markers, SimOptionError, merge_options, options_from_headers, parse_markers
from proxy.sim.protocol import completion_body, error_body, injected_error_body, model_entry, models_body
from proxy.sim.script import (
    Failure,
    FailureBudget,
    ReplyPlan,
    content_text,
    last_user_index,
    prompt_estimate,
    plan_reply,
)
from proxy.sim.sse import ChunkEncoder, delta_count, encode_stream

__all__ = ["SimApp", "SimConfig", "StreamCut", "build_sim_app"]

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RECORD_LIMIT = 200
_JSON_TYPE = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_END = {"type": "http.response.body", "body": b"", "more_body": False}


class StreamCut(Exception):
    """Raised mid-response so the server drops the connection (`fail_after_chunks`)."""


class _HideStreamCuts(logging.Filter):
    """Drops uvicorn's traceback for the connection cuts we inject on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


_STREAM_CUT_FILTER = _HideStreamCuts()


class _RequestError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


async def _send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*(headers or [_JSON_TYPE]), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_json(receive: Receive) -> tuple[dict[str, Any], bytes]:
    """The request's JSON object, and its bytes as they came."""
    message = await receive()
    raw = message.get("body", b"")
    if message.get("more_body"):
        parts = [raw]
        while message.get("more_body"):
            message = await receive()
            parts.append(message.get("body", b""))
        raw = b"".join(parts)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _RequestError(400, f"We could not parse the JSON body of your request: {exc}") from None
    if not isinstance(body, dict):
        raise _RequestError(400, "The request body must be a JSON object.")
    return body, raw


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class SimApp:
    """The ASGI callable; `requests` holds the recorded request bodies."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        # (body bytes, path, headers), parsed when asked for: a parsed 5,000-message body is ~5,000 dicts the
        # collector would walk and free later, on every request of a large-context benchmark.
        self.requests: deque[tuple[bytes, str, dict[str, str]]] = deque(maxlen=RECORD_LIMIT)
        self.failures = FailureBudget()
        self._id_prefix = "chatcmpl-sim" + os.urandom(4).hex()
        self._serial = 0
        self._created = int(time.time())
        self._models = models_body(config.model_list, self._created)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self._route(scope, receive, send)
            except _RequestError as exc:
                body = error_body(str(exc), "invalid_request_error", exc.code, exc.param)
                await _send_bytes(send, exc.status, body)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"].rstrip("/") or "/"
        method: str = scope["method"]
        if path == "/v1/chat/completions" and method == "POST":
            await self._chat(scope, receive, send)
        elif path == "/v1/embeddings" and method == "POST":
            await self._embeddings(scope, receive, send)
        elif path == "/v1/models" and method == "GET":
            await _send_bytes(send, 200, self._models)
        elif path.startswith("/v1/models/") and method == "GET":
            model_id = path[len("/v1/models/"):]
            if model_id not in self.config.model_list:
                raise _RequestError(404, f"The model '{model_id}' does not exist", "model_not_found", "model")
            await _send_bytes(send, 200, orjson.dumps(model_entry(model_id, self._created)))
        elif path == "/sim/requests" and method == "GET":
            await _send_bytes(send, 200, orjson.dumps(self.recorded()))
        elif path == "/sim/requests" and method == "DELETE":
            deleted = len(self.requests)
            self.requests.clear()
            await _send_bytes(send, 200, orjson.dumps({"deleted": deleted}))
        elif path == "/sim/health" and method == "GET":
            await _send_bytes(send, 200, b'{"status":"ok"}')
        elif path in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/sim/requests", "/sim/health"):
            raise _RequestError(405, f"Method {method} not allowed on {path}", "method_not_allowed")
        else:
            raise _RequestError(404, f"Unknown request URL: {method} {path}", "unknown_url")

    def _record(self, raw: bytes, scope: Scope) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k != b"authorization"}
        self.requests.append((raw, scope["path"], headers))

    def recorded(self) -> list[dict[str, Any]]:
        """The recorded request bodies, oldest first, each with its `_path` and `_headers` (no authorization)."""
        return [{**orjson.loads(raw), "_path": path, "_headers": headers} for raw, path, headers in self.requests]

    def _next_id(self) -> str:
        self._serial += 1
        return f"{self._id_prefix}{self._serial:08x}"

    async def _inject(self, send: Send, failure: Failure | None) -> bool:
        """Apply a stall and/or an error status; True when the response has been sent."""
        if failure is None:
            return False
        if failure.stall_s > 0 and failure.stall_after is None:
            await asyncio.sleep(failure.stall_s)
        if not failure.status:
            return False
        headers = [_JSON_TYPE]
        if failure.retry_after_s is not None:
            headers.append((b"retry-after", str(max(0, math.ceil(failure.retry_after_s))).encode()))
            headers.append((b"retry-after-ms", str(max(0, round(failure.retry_after_s * 1000))).encode()))
        await _send_bytes(send, failure.status, injected_error_body(failure.status), headers)
        return True

    async def _send_json_result(self, send: Send, body: bytes, failure: Failure | None) -> None:
        if failure is None or (failure.after_chunks is None and failure.stall_after is None):
            await _send_bytes(send, 200, body)
            return
        # A non-streamed body stalls and/or is cut halfway, so the client sees a truncated response.
        half = len(body) // 2
        await send({"type": "http.response.start", "status": 200, "headers": [_JSON_TYPE]})
        await send({"type": "http.response.body", "body": body[:half], "more_body": True})
        if failure.stall_after is not None:
            await asyncio.sleep(failure.stall_s)
        if failure.after_chunks is not None:
            raise StreamCut("injected cut of a JSON response")
        await send({"type": "http.response.body", "body": body[half:], "more_body": False})

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, raw = await _read_json(receive)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _RequestError(400, "'messages' must be a non-empty array.", "invalid_value", "messages")
        if self.config.record:
            self._record(raw, scope)
        user_at = last_user_index(messages)
        try:
            markers = parse_markers(content_text(messages[user_at].get("content"))) if user_at >= 0 else Markers("")
            options = merge_options(markers.sim, options_from_headers(scope["headers"]), body.get("sim"))
            plan = plan_reply(body, messages, options, markers, self.config)
        except SimOptionError as exc:
            raise _RequestError(400, str(exc), "invalid_sim_option", "sim") from None
        failure = self.failures.take(options)
        if await self._inject(send, failure):
            return
        limit = options.get("max_context_tokens", self.config.max_context_tokens)
        if limit is not None:
            estimate = prompt_estimate(messages, body.get("tools"))
            if estimate > limit:
                raise _RequestError(
                    400,
                    f"This model's maximum context length is {limit} tokens. However, your messages resulted "
                    f"in {estimate} tokens. Please reduce the length of the messages.",
                    "context_length_exceeded",
                    "messages",
                )
        model = str(body.get("model") or self.config.model_list[0])
        completion_id, created = self._next_id(), int(time.time())
        cut_after = failure.after_chunks if failure else None
        if body.get("stream") is True:
            stream_options = body.get("stream_options")
            include_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
            encoder = ChunkEncoder(completion_id, created, model, include_usage)
            stall = (failure.stall_after, failure.stall_s) if failure and failure.stall_after is not None else None
            await self._stream(send, encode_stream(plan, encoder, include_usage), delta_count(plan), plan, cut_after,
                               stall)
            return
        wait = plan.ttft_s + plan.token_delay_s * max(0, delta_count(plan) - 1)
        if wait > 0:
            await asyncio.sleep(wait)
        await self._send_json_result(send, completion_body(plan, completion_id, created, model), failure)

    async def _stream(
        self, send: Send, events: list[bytes], last_delta: int, plan: ReplyPlan, cut_after: int | None,
        stall: tuple[int, float] | None = None,
    ) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        if cut_after is None and stall is None and plan.ttft_s <= 0 and plan.token_delay_s <= 0:
            # Zero-delay fast path: the whole stream in one write.
            await send({"type": "http.response.body", "body": b"".join(events), "more_body": False})
            return
        if plan.ttft_s > 0:
            await asyncio.sleep(plan.ttft_s)
        delay = plan.token_delay_s
        for i, event in enumerate(events):
            if stall is not None and i == stall[0]:
                await asyncio.sleep(stall[1])
            if i == cut_after:
                raise StreamCut(f"injected cut after {cut_after} chunks")
            if delay > 0 and 1 < i <= last_delta:
                await asyncio.sleep(delay)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        if cut_after is not None:
            raise StreamCut(f"injected cut after {cut_after} chunks")
        await send(_END)

    async def _embeddings(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, raw = await _read_json(receive)
        if self.config.record:
            self._record(raw, scope)
        try:
            options = merge_options(options_from_headers(scope["headers"]), body.get("sim"))
        except SimOptionError as exc:
            raise _RequestError(400, str(exc), "invalid_sim_option", "sim") from None
        failure = self.failures.take(options)
        if await self._inject(send, failure):
            return
        try:
            texts = embedding_inputs(body.get("input"))
        except ValueError as exc:
            raise _RequestError(400, f"Invalid 'input': {exc}", "invalid_value", "input") from None
        dim = body.get("dimensions") or self.config.embedding_dim
        if not isinstance(dim, int) or isinstance(dim, bool) or not 1 <= dim <= 65536:
            raise _RequestError(400, "'dimensions' must be a positive integer.", "invalid_value", "dimensions")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            message = "'encoding_format' must be 'float' or 'base64'."
            raise _RequestError(400, message, "invalid_value", "encoding_format")
        tokens = max(1, sum(len(t) for t in texts) // 4)
        result = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode_vector(embed_text(t, dim), encoding)}
                for i, t in enumerate(texts)
            ],
            "model": str(body.get("model") or "sim-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        await self._send_json_result(send, orjson.dumps(result), failure)


def build_sim_app(config: SimConfig | None = None) -> SimApp:
    """The simulator as an ASGI app, ready for any ASGI server or httpx's ASGITransport."""
    error_log = logging.getLogger("uvicorn.error")
    if _STREAM_CUT_FILTER not in error_log.filters:
        error_log.addFilter(_STREAM_CUT_FILTER)
    return SimApp(config or SimConfig())
