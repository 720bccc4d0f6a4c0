"""The ASGI application: routes, middleware, error handlers and the start-up/shut-down of the runtime."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from proxy.api.openapi import OPEN_PATHS as DOCS_PATHS
from proxy.api.openapi import openapi_routes
from proxy.api.routes import operations as management_operations
from proxy.api.routes import routes as management_routes
from proxy.chat.forward import routes as forward_routes
from proxy.chat.routes import ChatFastPath
from proxy.chat.routes import routes as chat_routes
from proxy.letta.routes import operations as letta_operations
from proxy.letta.routes import routes as letta_routes
from proxy.console.routes import OPEN_PATHS as CONSOLE_PATHS
from proxy.console.routes import routes as console_routes
from proxy.config import Settings
from memory.store import StoreError
from proxy.errors import APIError, handle_api_error, handle_http_exception, handle_store_error, handle_unexpected
from proxy.http import BearerAuth, BearerKeys
from proxy.metrics import Metrics, RequestMetrics, metrics_endpoint
from proxy.runtime import Runtime, close_runtime, open_runtime

log = logging.getLogger("memproxy")
# Health, and the console's own files (code only: every data call they make needs the key).
_OPEN_PATHS = frozenset({"/v1/health", "/v1/health/"}) | CONSOLE_PATHS | DOCS_PATHS


class MemproxyApp(Starlette):
    """Starlette, but a POST to a chat path goes to `ChatFastPath` ahead of the middleware stack and router."""

    def __init__(self, chat: ChatFastPath, **kw: Any) -> None:
        super().__init__(**kw)
        self.chat = chat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.chat.paths:
            scope["app"] = self
            await self.chat(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def build_app(settings: Settings) -> Starlette:
    """The whole server. The runtime (store, caches, upstream client) opens in the lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt = await open_runtime(settings)
        rt.metrics = metrics
        sim_server = None
        if settings.uses_simulator:
            sim_server, base_url = await _start_embedded_simulator()
            rt.upstream.set_base_url(base_url)
        app.state.rt = rt
        await _start_services(rt)
        # Everything loaded so far lives as long as the process: keep the collector from rescanning it, so
        # full collections (pauses of milliseconds between two streamed tokens) stay short and rare. Only
        # the young generations are collected first: a full collection here found no garbage in a fresh
        # server (138k objects) and took 106 ms of its start-up on a 2-core machine.
        gc.collect(1)
        gc.freeze()
        # A turn allocates a few thousand tracked objects, nearly all freed by reference counting, and young
        # collections here cost ~0.4 us per object (young containers point into agents' histories). Collecting
        # the youngest generation every 2,000 allocations instead of 700 cut the collector's time per turn from
        # 0.045 to 0.016 ms (50 in context, c=8) for pauses of 0.4 ms instead of 0.3 (5,000: 0.012 ms, but
        # 1.3 ms pauses, too close to the inter-chunk budget). Garbage is only collected later, never kept.
        threshold = gc.get_threshold()
        gc.set_threshold(2000, threshold[1], threshold[2])
        try:
            yield
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()  # let the runtime's objects be collected as it closes
            await _stop_services(rt)
            await close_runtime(rt)
            metrics.process_exiting()
            if sim_server is not None:
                sim_server.should_exit = True

    metrics = Metrics()
    keys = BearerKeys(settings.api_keys, _OPEN_PATHS)
    app = MemproxyApp(
        ChatFastPath(metrics, keys),
        routes=[*chat_routes, *letta_routes, *management_routes, *console_routes, *forward_routes,
                *openapi_routes([*management_operations, *letta_operations]), Route("/metrics", metrics_endpoint)],
        middleware=[Middleware(RequestMetrics, metrics=metrics),
                    Middleware(BearerAuth, keys=keys)],
        exception_handlers={
            APIError: handle_api_error,
            HTTPException: handle_http_exception,
            StoreError: handle_store_error,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    return app


async def _start_services(rt: Runtime) -> None:
    """Optional subsystems that need the running loop (long-term memory, turn runner)."""
    from proxy.services import start_services

    await start_services(rt)


async def _stop_services(rt: Runtime) -> None:
    from proxy.services import stop_services

    await stop_services(rt)


async def _start_embedded_simulator() -> tuple[Any, str]:
    """No upstream configured: serve the simulator on a private loopback port in this process."""
    import uvicorn

    from proxy.quiet_server import QuietServer
    from proxy.sim import SimConfig, build_sim_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_sim_app(SimConfig()), log_level="warning", access_log=False, lifespan="off")
    server = QuietServer(config)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    return server, f"http://127.0.0.1:{port}/v1"
