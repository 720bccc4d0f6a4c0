"""Liveness: `GET /v1/health/`, open even when API keys are set."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy import __version__
from proxy.http import json_response


async def health(request: Request) -> Response:
    rt = request.app.state.rt
    search = "hybrid" if rt.settings.embedding_model else "full-text"
    return json_response({"version": __version__, "status": "ok", "search": search,
                          "index_repaired_at_start": rt.reconciliation})
