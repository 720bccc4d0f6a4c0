"""Liveness: `GET /v1/health/`, open even when API keys are set."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy import __version__
from proxy.http import json_response


async def health(request: Request) -> Response:
    return json_response({"version": __version__, "status": "ok"})
