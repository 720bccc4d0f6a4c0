"""The rest of an app's OpenAI traffic, forwarded for non-agent models: embeddings, completions, responses..."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.api.lookup import runtime
from proxy.errors import APIError
from proxy.http import json_response, parse_json_object, read_body
from proxy.relay import relay_response
from proxy.upstream import UpstreamError


async def forward_post(request: Request) -> Response:
    """POST the body as sent to the same path upstream; an agent model is refused (agents only chat)."""
    raw = await read_body(request)
    model = parse_json_object(raw).get("model")
    if isinstance(model, str) and model.startswith("agent-"):
        raise APIError(400, f"`{model}` is an agent: agents answer on /v1/chat/completions only", param="model",
                       code="unsupported_for_agents")
    return await _send(request, "POST", raw)


async def model_by_id(request: Request) -> Response:
    """An agent described as a model; any other id is the upstream's to describe."""
    model_id = request.path_params["model_id"]
    if model_id.startswith("agent-"):
        live = await runtime(request).memory.get(model_id)
        if live is None:
            raise APIError(404, f"The model `{model_id}` does not exist: no agent has that id", param="model",
                           code="model_not_found")
        agent = live.agent
        return json_response({"id": agent.id, "object": "model", "created": int(agent.created_at.timestamp()),
                              "owned_by": "memproxy"})
    return await _send(request, "GET", None)


async def _send(request: Request, method: str, body: bytes | None) -> Response:
    upstream = runtime(request).upstream
    path = request.url.path.removeprefix("/v1")
    headers = {"Accept-Encoding": "identity"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    headers.update({k: v for k, v in request.headers.items() if k.startswith("x-sim-")})
    try:
        response = await upstream.send(method, path, body, headers)
    except UpstreamError as exc:
        raise APIError(exc.status, exc.message, code=exc.code) from None
    return await relay_response(response)


routes = [
    Route("/v1/models/{model_id:path}", model_by_id, methods=["GET"]),
    *(Route(path, forward_post, methods=["POST"])
      for path in ("/v1/embeddings", "/v1/completions", "/v1/responses", "/v1/moderations")),
]
