"""Routes of the chat surface, including the path aliases real clients hit."""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from memory.models import new_id
from memory.store import StoreError
from proxy import logs
from proxy.chat.passthrough import forward_chat
from proxy.chat.protocol import parse_chat_request
from proxy.errors import APIError, handle_store_error
from proxy.http import parse_json_object, read_body


async def chat_completions(request: Request) -> Response:
    received = time.perf_counter()
    logs.request_id.set(request.headers.get("x-request-id") or new_id("req"))
    rt = request.app.state.rt
    raw = await read_body(request)
    body = parse_json_object(raw)
    model = request.path_params.get("agent_id") or body.get("model")
    forwarded = {k: v for k, v in request.headers.items() if k.startswith("x-sim-")}
    if isinstance(model, str) and model.startswith("agent-"):
        body["model"] = model
        logs.agent_id.set(model)
        chat = parse_chat_request(body)
        chat.upstream_headers = forwarded
        chat.received_at = received
        live = await rt.memory.get(model)
        if live is None:
            raise APIError(404, f"The model `{model}` does not exist: no agent has that id", param="model",
                           code="model_not_found")
        return await rt.turns.serve(live, chat, request)
    if not isinstance(model, str) or not model:
        raise APIError(400, "`model` is required and must be a string", param="model", code="missing_model")
    return await forward_chat(rt.upstream, raw, forwarded, received, rt.metrics)


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/chat/completions", chat_completions, methods=["POST"]),
    # LiveKit's with_letta base_url already ends in /chat/completions and the SDK appends it again.
    Route("/v1/chat/completions/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/voice-beta/{agent_id}/chat/completions", chat_completions, methods=["POST"]),
]

Endpoint = Callable[[Request], Awaitable[Response]]
# The chat paths with no path parameters: the ones ChatFastPath serves.
FAST_PATHS = frozenset(route.path for route in routes if "{" not in route.path)


class ChatFastPath:
    """ASGI middleware: a POST to a chat path goes straight to its handler.

    It skips what Starlette adds per request on the way there (route matching, two layers of send wrappers,
    the exception middleware) with the same answers: an `APIError` or `StoreError` becomes the response its
    app-wide handler would make, anything else reaches the outer error middleware (a 500) as before. Other
    requests, and the voice path with its agent id, go through the router.
    """

    def __init__(self, app: ASGIApp, endpoint: Endpoint = chat_completions, paths: frozenset[str] = FAST_PATHS) -> None:
        self.app = app
        self.endpoint = endpoint  # another endpoint only in `python -m bench.asgi_cost`
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        scope["endpoint"] = self.endpoint  # the route name RequestMetrics counts
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except APIError as exc:
            response = exc.response()
        except StoreError as exc:
            response = await handle_store_error(request, exc)
        await response(scope, receive, send)
