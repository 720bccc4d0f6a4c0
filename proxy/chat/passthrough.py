"""Non-agent models go to the upstream unchanged: the body as sent, the answer byte for byte."""

from __future__ import annotations

import time

from starlette.responses import Response

from proxy.errors import APIError
from proxy.metrics import Metrics, server_timing
from proxy.relay import relay_response
from proxy.upstream import Upstream, UpstreamError


async def forward_chat(upstream: Upstream, raw_body: bytes, extra_headers: dict[str, str], received: float,
                       metrics: Metrics) -> Response:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **extra_headers}
    sent = time.perf_counter()
    metrics.added_ttft_passthrough.observe(sent - received)
    try:
        response = await upstream.open_chat_stream(raw_body, headers)
    except UpstreamError as exc:
        metrics.upstream_errors.labels(str(exc.status), exc.code or "upstream_error").inc()
        raise APIError(exc.client_status, exc.message, code=exc.code) from None
    return await relay_response(response, {"Server-Timing": server_timing(received, sent, time.perf_counter())})
