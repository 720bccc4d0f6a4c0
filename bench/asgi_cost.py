"""`python -m bench.asgi_cost`: what Starlette's per-request machinery costs a streamed chat request, in process.

Two apps with memproxy's middleware (request metrics, bearer auth, the error handlers) serve the same
endpoint (read the body, parse it, stream four SSE chunks): through the middleware, Starlette's router and
`StreamingResponse` (anyio task group watching for a disconnect), as /v1/chat/completions was served
before, and through `MemproxyApp` handing it to `ChatFastPath` (auth, metrics and errors in one call)
and `EventStream`, as it is now. The server (uvicorn, httptools) is
left out: the ASGI app is called directly on uvloop, so the difference is the wrappers' alone.
Best of 5 runs of 3,000 requests each; microseconds of wall time per request on one otherwise idle loop.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, AsyncIterator

import orjson
import uvloop
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy.asgi_stream import EventStream
from proxy.app import MemproxyApp
from proxy.chat.routes import ChatFastPath
from proxy.errors import APIError, handle_api_error, handle_unexpected
from proxy.http import BearerAuth, BearerKeys, parse_json_object, read_body
from proxy.metrics import Metrics, RequestMetrics

PATH = "/v1/chat/completions"
BODY = orjson.dumps({"model": "sim-small", "stream": True, "messages": [{"role": "user", "content": "hello"}]})
CHUNKS = [b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'] * 3 + [b"data: [DONE]\n\n"]
REQUESTS = 3_000


async def _chunks() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        yield chunk


async def _starlette_endpoint(request: Request) -> Response:
    parse_json_object(await read_body(request))
    return StreamingResponse(_chunks(), media_type="text/event-stream")


async def _lean_endpoint(request: Request) -> Response:
    parse_json_object(await read_body(request))
    return EventStream(_chunks(), media_type="text/event-stream")


def _app(lean: bool) -> Starlette:
    metrics, keys = Metrics(), BearerKeys(())
    middleware = [Middleware(RequestMetrics, metrics=metrics), Middleware(BearerAuth, keys=keys)]
    routes = [Route(PATH, _starlette_endpoint, methods=["POST"])]
    handlers = {APIError: handle_api_error, Exception: handle_unexpected}
    app: Starlette
    if lean:
        chat = ChatFastPath(metrics, keys, endpoint=_lean_endpoint, paths=frozenset({PATH}))
        app = MemproxyApp(chat, routes=routes, middleware=middleware, exception_handlers=handlers)
    else:
        app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.settings = SimpleNamespace(max_body_bytes=1 << 20)
    return app


def chat_scope(body: bytes, extra_headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """The ASGI scope of a JSON POST of `body` to /v1/chat/completions, as uvicorn would hand it over."""
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *(extra_headers or [])]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
            "state": {}}


async def _serve(app: Starlette, n: int) -> float:
    scope_base = chat_scope(BODY)
    never = asyncio.get_running_loop().create_future()

    async def send(message: Any) -> None:
        return None

    t0 = time.perf_counter()
    for _ in range(n):
        sent = False

        async def receive() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await asyncio.shield(never)  # the client stays; the response ends first

        await app(dict(scope_base), receive, send)
    return (time.perf_counter() - t0) / n * 1e6


async def _measure() -> dict[str, float]:
    out: dict[str, float] = {}
    for name, lean in (("starlette", False), ("lean", True)):
        app = _app(lean)
        async with app.router.lifespan_context(app):
            await _serve(app, 200)  # warm-up
            out[name] = min([await _serve(app, REQUESTS) for _ in range(5)])
    return out


def main() -> None:
    figures = uvloop.run(_measure())
    print(f"per streamed request, ASGI app only: Starlette router + StreamingResponse {figures['starlette']:.1f} us, "
          f"ChatFastPath + EventStream {figures['lean']:.1f} us, saved {figures['starlette'] - figures['lean']:.1f} us")


if __name__ == "__main__":
    main()
