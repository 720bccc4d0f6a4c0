"""Routes of the chat surface, including the path aliases real clients hit."""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from memory.models import new_id
from memory.store import StoreError
from proxy import logs
from proxy.chat.passthrough import forward_chat
from proxy.chat.protocol import parse_chat_request
from proxy.chat.retries import IDEMPOTENCY_HEADERS
from proxy.errors import APIError, handle_store_error, handle_unexpected
from proxy.http import BearerKeys, parse_json_object, read_body
from proxy.metrics import Metrics
from proxy.resumable import RESUMABLE_HEADER


# Headers an agent turn reads, taken in the route's one pass over the raw list: looked up in Starlette's
# `Headers` instead, each missing one decoded every header and raised a KeyError inside `Mapping.get`.
TURN_HEADERS = frozenset({*(name.encode() for name in IDEMPOTENCY_HEADERS), RESUMABLE_HEADER.encode()})


async def chat_completions(request: Request) -> Response:
    received = time.perf_counter()
    # One pass over the raw headers for the few this route reads (Starlette's `Headers` decodes them all).
    request_id = declared = None
    forwarded: dict[str, str] = {}
    turn_headers: dict[str, str] = {}  # the few an agent turn reads (its retry key, resumability), first wins
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            declared = declared or value
        elif name.startswith(b"x-sim-"):
            forwarded[name.decode("latin-1")] = value.decode("latin-1")
        elif name in TURN_HEADERS:
            turn_headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
            if name == b"x-request-id":
                request_id = request_id or value
    logs.request_id.set(request_id.decode("latin-1") if request_id else new_id("req"))
    rt = request.app.state.rt
    raw = await read_body(request, declared or b"")
    body = parse_json_object(raw)
    model = request.path_params.get("agent_id") or body.get("model")
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
        return await rt.turns.serve(live, chat, request, turn_headers)
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
    """The chat paths' whole ASGI stack in one call: a POST to one of them is served here, before Starlette.

    `MemproxyApp` hands such requests over ahead of its middleware (request metrics, bearer auth, the
    server-error middleware) and router, whose per-request layers and per-message send wrappers cost more
    than the route's own work at this rate. It gives the same answers: a refused key is a 401 counted for
    no route, as `BearerAuth` answers outside any route; an `APIError` or `StoreError` becomes the response
    its app-wide handler would make; anything else gets the 500 of `handle_unexpected` (which says the
    connection closes) and goes on up to the server, which logs it and closes the connection, as after
    Starlette's error middleware. Every response is counted by route and status, as `RequestMetrics` does.
    """

    def __init__(self, metrics: Metrics, auth: BearerKeys, endpoint: Endpoint = chat_completions,
                 paths: frozenset[str] = FAST_PATHS) -> None:
        self.requests = metrics.requests
        self.auth = auth
        self.endpoint = endpoint  # another endpoint only in `python -m bench.asgi_cost`
        self.route = endpoint.__name__
        self.counted_ok = metrics.requests.labels(self.route, "200")  # nearly every request: bound once
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self.auth.refusal(scope)
        if refused is not None:
            try:
                await refused(scope, receive, send)
            finally:
                self.requests.labels("unmatched", "401").inc()
            return
        scope["endpoint"] = self.endpoint
        status = 500  # until a response starts, as RequestMetrics counts
        started = False
        request = Request(scope, receive)
        try:
            try:
                response = await self.endpoint(request)
            except APIError as exc:
                response = exc.response()
            except StoreError as exc:
                response = await handle_store_error(request, exc)
            # A response's first message is its start, with this status.
            status, started = response.status_code, True
            await response(scope, receive, send)
        except Exception as exc:
            answer = await handle_unexpected(request, exc)  # logged either way
            if not started:
                await answer(scope, receive, send)
            raise
        finally:
            (self.counted_ok if status == 200 else self.requests.labels(self.route, str(status))).inc()
