"""Relaying an upstream answer to a client of a non-agent model: which headers pass, how errors are shaped."""

from __future__ import annotations

from typing import Any, AsyncIterator, Mapping

import httpx
import orjson
from starlette.responses import Response

from proxy.asgi_stream import EventStream, LastChunk
from proxy.errors import APIError
from proxy.http1 import ReadTimeout, StreamCut
from proxy.upstream import UpstreamError

# Only these upstream headers reach the client: cookies, organisation ids and CDN tracing stay upstream.
RELAYED_HEADERS = frozenset({"content-type", "retry-after", "x-request-id", "openai-processing-ms"})
RELAYED_PREFIXES = ("x-ratelimit-",)


def relayed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed subset of an upstream response's headers."""
    return {k: v for k, v in headers.items()
            if k.lower() in RELAYED_HEADERS or k.lower().startswith(RELAYED_PREFIXES)}


async def relay_response(response: Any, extra: Mapping[str, str] | None = None) -> Response:
    """An opened upstream response as the client's: errors in OpenAI shape, streams relayed as they arrive.

    `extra` headers go on the answer beside the upstream's allow-listed ones.
    """
    if response.status_code >= 400:
        body = await read_all(response)
        error = relay_error(response.status_code, body, response.headers)
        if extra:
            error.headers.update(extra)
        return error
    headers = relayed_headers(response.headers)
    if extra:
        headers.update(extra)
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        body = await read_all(response)
        return Response(body, status_code=response.status_code, headers=headers)
    return EventStream(relay_stream(response), status_code=response.status_code, headers=headers,
                       on_close=response.aclose)


async def read_all(response: Any) -> bytes:
    """A whole body; an upstream that resets or stalls mid-body is a 502 or 504 in OpenAI shape, never a 500."""
    try:
        return await response.aread()
    except (httpx.TimeoutException, ReadTimeout):
        raise APIError(504, "the upstream model timed out while sending its answer", code="upstream_timeout") from None
    except (httpx.HTTPError, StreamCut) as exc:
        raise APIError(502, f"the upstream's answer was cut off: {str(exc) or type(exc).__name__}",
                       code="upstream_stream_cut") from None
    finally:
        await response.aclose()


async def relay_stream(response: Any) -> AsyncIterator[bytes]:
    try:
        async for piece in response.aiter_bytes():
            # The lean client says which piece ends the body: it goes out with the end of the response.
            yield LastChunk(piece) if getattr(response, "last_piece", False) else piece
    except (httpx.TimeoutException, ReadTimeout):
        # The upstream stalled: say so in-band, with the status an agent turn's stall gets (504).
        err = APIError(504, "the upstream model timed out mid-stream", code="upstream_timeout")
        yield b"data: " + orjson.dumps(err.body()) + b"\n\ndata: [DONE]\n\n"
    except (httpx.HTTPError, StreamCut):
        # The upstream cut the stream: say so in-band, as an agent turn would.
        err = APIError(502, "the upstream stream ended unexpectedly", code="upstream_stream_cut")
        yield b"data: " + orjson.dumps(err.body()) + b"\n\ndata: [DONE]\n\n"
    finally:
        await response.aclose()


def relay_error(status: int, body: bytes, headers: Any) -> Response:
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
