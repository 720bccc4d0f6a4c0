"""Prometheus metrics (`GET /metrics`): one registry per server, updated on the request path at µs cost."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from proxy import metrics_mp
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Overheads are sub-millisecond; upstream and tool times run to seconds.
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Metrics:
    """Every metric memproxy exports, named `memproxy_*`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("memproxy_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.added_ttft = Histogram("memproxy_added_ttft_seconds",
                                    "memproxy's own time before the upstream call plus after its first token",
                                    ["route"], buckets=FAST_BUCKETS, registry=r)
        self.upstream_ttft = Histogram("memproxy_upstream_ttft_seconds", "upstream time to first byte, per call",
                                       buckets=SLOW_BUCKETS, registry=r)
        self.tool_step = Histogram("memproxy_tool_step_seconds", "time to run one step's server tools",
                                   buckets=SLOW_BUCKETS, registry=r)
        self.commit = Histogram("memproxy_store_commit_seconds", "time to commit a turn before acknowledging it",
                                buckets=FAST_BUCKETS + (2.5, 5.0), registry=r)
        self.lock_wait = Histogram("memproxy_lock_wait_seconds", "time a turn waited for its agent's lock",
                                   buckets=FAST_BUCKETS + SLOW_BUCKETS[-6:], registry=r)
        # With several workers: the sum over the live ones (a dead worker's turns are not in flight).
        self.turns_in_flight = Gauge("memproxy_turns_in_flight", "agent turns running now", registry=r,
                                     multiprocess_mode="livesum")
        self.upstream_errors = Counter("memproxy_upstream_errors", "upstream failures by status and code",
                                       ["status", "code"], registry=r)
        self.turns = Counter("memproxy_turns", "agent turns by how they ended", ["status"], registry=r)
        # The children every turn touches, bound once rather than looked up by label on each request.
        self.added_ttft_agent = self.added_ttft.labels("agent")
        self.added_ttft_passthrough = self.added_ttft.labels("passthrough")
        self.turns_completed = self.turns.labels("completed")
        self.turns_failed = self.turns.labels("failed")
        self.turns_cancelled = self.turns.labels("cancelled")
        self._sampled: list[Callable[[], Iterator[Any]]] = []
        self._sampler = _Sampled(self._sampled)
        r.register(self._sampler)
        self.shared_dir = metrics_mp.directory()  # set when this process is one of several workers

    def sample(self, read: Callable[[], Iterator[Any]]) -> None:
        """Add metric families computed at scrape time (cache counters, memory)."""
        self._sampled.append(read)

    def render(self) -> bytes:
        if self.shared_dir is not None:
            return metrics_mp.render(self.shared_dir, self._sampler)
        return generate_latest(self.registry)

    def process_exiting(self) -> None:
        """This worker stops: its live gauges leave the sums at once."""
        if self.shared_dir is not None:
            metrics_mp.worker_exited(os.getpid())


class _Sampled(Collector):
    def __init__(self, readers: list[Callable[[], Iterator[Any]]]) -> None:
        self.readers = readers

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily("memproxy_resident_memory_bytes", "resident set size of this process",
                                value=_rss_bytes())
        for read in self.readers:
            yield from read()

    def describe(self) -> list[Any]:
        return []


def _rss_bytes() -> float:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return float(int(statm.read().split()[1]) * _PAGE)
    except (OSError, IndexError, ValueError):
        return 0.0


def counter_family(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


class RequestMetrics:
    """ASGI middleware: count every response by the route that served it and its status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", None) or "unmatched"
            self.metrics.requests.labels(route, str(status)).inc()


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE)


def server_timing(received: float, sent: float | None, answered: float | None) -> str:
    """`Server-Timing`: memproxy's own time until the upstream request went out, then the upstream's until it answered."""
    if sent is None:
        return f"memproxy;dur={(time.perf_counter() - received) * 1000:.3f}"
    own = f"memproxy;dur={(sent - received) * 1000:.3f}"
    return own if answered is None else f"{own}, upstream;dur={(answered - sent) * 1000:.3f}"
