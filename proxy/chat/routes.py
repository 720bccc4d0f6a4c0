"""Routes of the chat surface, including the path aliases real clients hit."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from memory.models import new_id
from proxy import logs
from proxy.chat.passthrough import forward_chat
from proxy.chat.protocol import parse_chat_request
from proxy.errors import APIError
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
