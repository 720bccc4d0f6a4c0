"""`GET /v1/models`: every agent as a model id, then the upstream's own models."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from memory.tokens import context_window_for
from proxy.api.agents import public_endpoint
from proxy.api.lookup import runtime
from proxy.api.protocol import model_handle
from proxy.http import json_response
from proxy.upstream import Upstream

log = logging.getLogger("memproxy")

UPSTREAM_MODELS_TTL = 60.0
# Keyed by upstream base URL: one process may serve several upstreams (tests, embedded simulator).
_upstream_cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}


async def upstream_models(upstream: Upstream) -> list[dict[str, Any]]:
    """The upstream's model list, fetched at most once a minute; empty (and retried) on failure."""
    now = time.monotonic()
    cached = _upstream_cache.get(upstream.base_url)
    if cached is not None and now - cached[0] < UPSTREAM_MODELS_TTL:
        return cached[1]
    try:
        models = [m for m in await upstream.models() if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except Exception as exc:  # noqa: BLE001 - the agents alone are still a useful answer
        log.warning("listing the upstream's models failed: %s", type(exc).__name__)
        return []
    if models:
        _upstream_cache[upstream.base_url] = (now, models)
    return models


async def list_models(request: Request) -> Response:
    """OpenAI's SDKs ask for `/v1/models`, Letta's for `/v1/models/` (`letta_models`): each gets its own shape."""
    rt = runtime(request)
    agents = await rt.store.list_agents(limit=None, ascending=True)
    data: list[dict[str, Any]] = [
        {"id": agent.id, "object": "model", "created": int(agent.created_at.timestamp()), "owned_by": "memproxy"}
        for agent in agents
    ]
    data.extend(await upstream_models(rt.upstream))
    return json_response({"object": "list", "data": data})


async def letta_models(request: Request) -> Response:
    """Letta's model list: the upstream's models an agent can be created with (agents are not models here)."""
    rt = runtime(request)
    ids = [m["id"] for m in await upstream_models(rt.upstream)] or [rt.settings.default_model]
    endpoint = public_endpoint(rt)
    out = []
    for model in ids:
        window = context_window_for(model, None)
        out.append({"model": model, "name": model, "display_name": model, "handle": model_handle(model),
                    "model_endpoint_type": "openai", "model_endpoint": endpoint, "model_type": "llm",
                    "provider_type": "openai", "provider_name": "openai", "provider_category": "base",
                    "context_window": window, "max_context_window": window, "model_wrapper": None,
                    "put_inner_thoughts_in_kwargs": False, "enable_reasoner": False, "temperature": None,
                    "max_tokens": None, "parallel_tool_calls": False})
    return json_response(out)
