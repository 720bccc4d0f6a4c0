"""`GET /v1/models`: every agent as a model id, then the upstream's own models."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from proxy.api.lookup import runtime
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
    rt = runtime(request)
    agents = await rt.store.list_agents(limit=None, ascending=True)
    data: list[dict[str, Any]] = [
        {"id": agent.id, "object": "model", "created": int(agent.created_at.timestamp()), "owned_by": "memproxy"}
        for agent in agents
    ]
    data.extend(await upstream_models(rt.upstream))
    return json_response({"object": "list", "data": data})
