"""Liveness: `GET /v1/health/`, open even when API keys are set."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy import __version__
from proxy.http import json_response


async def health(request: Request) -> Response:
    rt = request.app.state.rt
    longterm = rt.longterm
    vectors = longterm.vector_search if longterm is not None else bool(rt.settings.embedding_model)
    body = {"version": __version__, "status": "ok", "backend": rt.backend.name,
            "search": "hybrid" if vectors else "full-text", "index_repaired_at_start": rt.reconciliation}
    if rt.settings.embedding_model and not vectors:
        body["search_note"] = "the database has no pgvector extension: search is full-text only"
    return json_response(body)
