"""Non-agent models go to the upstream unchanged: the body as sent, the answer byte for byte."""

from __future__ import annotations

from starlette.responses import Response

from proxy.errors import APIError
from proxy.relay import relay_response
from proxy.upstream import Upstream, UpstreamError


async def forward_chat(upstream: Upstream, raw_body: bytes, extra_headers: dict[str, str]) -> Response:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **extra_headers}
    try:
        response = await upstream.open_chat_stream(raw_body, headers)
    except UpstreamError as exc:
        raise APIError(exc.status, exc.message, code=exc.code) from None
    return await relay_response(response)
