"""Non-agent models go to the upstream unchanged: the body as sent, the answer byte for byte."""

from __future__ import annotations

from typing import Any, AsyncIterator

import httpx
import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from proxy.errors import APIError
from proxy.http1 import ReadTimeout, StreamCut
from proxy.upstream import Upstream, UpstreamError

# Hop-by-hop and framing headers are the proxy's own business, never relayed.
_DROP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding",
                   "date", "server"})


async def forward_chat(upstream: Upstream, raw_body: bytes, extra_headers: dict[str, str]) -> Response:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **extra_headers}
    try:
        response = await upstream.open_chat_stream(raw_body, headers)
    except UpstreamError as exc:
        raise APIError(exc.client_status, exc.message, code=exc.code) from None
    if response.status_code >= 400:
        body = await _read_body(response)
        return _relay_error(response.status_code, body, response.headers)
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _DROP}
    media_type = response.headers.get("content-type", "application/json")
    if not media_type.startswith("text/event-stream"):
        body = await _read_body(response)
        return Response(body, status_code=response.status_code, headers=headers)
    return StreamingResponse(_relay(response), status_code=response.status_code, headers=headers,
                             background=BackgroundTask(response.aclose))


async def _read_body(response: Any) -> bytes:
    """The whole body; an upstream that stalls or drops it mid-way is a 504 or 502, as before the headers."""
    try:
        return await response.aread()
    except (httpx.TimeoutException, ReadTimeout):
        raise APIError(504, "the upstream model timed out while sending its answer", code="upstream_timeout") from None
    except (httpx.HTTPError, StreamCut) as exc:
        raise APIError(502, f"the upstream answer was cut off: {str(exc) or type(exc).__name__}",
                       code="upstream_stream_cut") from None
    finally:
        await response.aclose()


async def _relay(response: Any) -> AsyncIterator[bytes]:
    try:
        async for piece in response.aiter_bytes():
            yield piece
    except (httpx.TimeoutException, ReadTimeout):
        # The upstream stalled: say so in-band, as an agent turn would.
        err = APIError(504, "the upstream model timed out mid-stream", code="upstream_timeout")
        yield b"data: " + orjson.dumps(err.body()) + b"\n\ndata: [DONE]\n\n"
    except (httpx.HTTPError, StreamCut):
        # The upstream cut the stream: say so in-band, as an agent turn would.
        err = APIError(502, "the upstream stream ended unexpectedly", code="upstream_stream_cut")
        yield b"data: " + orjson.dumps(err.body()) + b"\n\ndata: [DONE]\n\n"
    finally:
        await response.aclose()


def _relay_error(status: int, body: bytes, headers: Any) -> Response:
    """Upstream errors keep their status; bodies not in the OpenAI shape are wrapped into it."""
    try:
        data = orjson.loads(body)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            err = data["error"]
            shaped = {"error": {"message": err.get("message"), "type": err.get("type"),
                                "param": err.get("param"), "code": err.get("code")}}
            extra = {"Retry-After": headers["retry-after"]} if "retry-after" in headers else None
            return Response(orjson.dumps(shaped), status_code=status, media_type="application/json", headers=extra)
    except orjson.JSONDecodeError:
        pass
    exc = UpstreamError.from_response(status, body, headers)
    return APIError(status, exc.message, code=exc.code or "upstream_error", headers=exc.headers or None).response()
