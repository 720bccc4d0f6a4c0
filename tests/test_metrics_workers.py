"""`/metrics` with several memproxy processes sharing a PROMETHEUS_MULTIPROC_DIR: one scrape sums them all."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from helpers import create_agent, sim_headers
from processes import ServerProcess
from proxy import metrics_mp
from test_metrics import scrape, value


@pytest.fixture
def workers(tmp_path: Path, sim_url: str) -> Iterator[Callable[[str], ServerProcess]]:
    started: list[ServerProcess] = []
    with metrics_mp.shared_directory() as shared:
        env = {metrics_mp.ENV: shared, "MEMPROXY_UPSTREAM_URL": sim_url, "MEMPROXY_LOG_LEVEL": "warning"}

        def start(name: str) -> ServerProcess:
            started.append(ServerProcess(tmp_path / name, env))
            return started[-1]

        yield start
        for proc in started:
            proc.stop()
    assert not os.path.exists(shared)  # the parent's private directory is gone with it


def passthrough(base_url: str) -> None:
    response = httpx.post(base_url + "/v1/chat/completions", timeout=30,
                          json={"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text


def test_one_scrape_sums_every_worker_and_forgets_a_dead_ones_turns(workers: Any) -> None:
    a, b = workers("a"), workers("b")
    a.wait_ready()
    b.wait_ready()
    before = scrape(a.base_url)
    for _ in range(2):
        passthrough(a.base_url)
    for _ in range(3):
        passthrough(b.base_url)
    from_a, from_b = scrape(a.base_url), scrape(b.base_url)
    for samples in (from_a, from_b):
        assert value(samples, "memproxy_requests_total", route="chat_completions", status="200") - \
            value(before, "memproxy_requests_total", route="chat_completions", status="200") == 5
        assert value(samples, "memproxy_added_ttft_seconds_count", route="passthrough") == 5
    # Per-process values are the answering worker's, and say which one.
    rss = [k for k in from_a if k[0] == "memproxy_resident_memory_bytes"]
    assert rss == [("memproxy_resident_memory_bytes", (("pid", str(a.proc.pid)),))]

    # A turn in flight on B counts in A's scrape, until B dies.
    agent = create_agent(b.base_url)
    started = threading.Event()

    def slow_turn() -> None:
        body = {"model": agent, "messages": [{"role": "user", "content": "slow"}], "stream": True}
        try:
            with httpx.stream("POST", b.base_url + "/v1/chat/completions", json=body, timeout=30,
                              headers=sim_headers(reply_tokens=400, token_delay_ms=25)) as response:
                for _ in response.iter_bytes():
                    started.set()
        except httpx.HTTPError:
            pass  # B is killed under it

    thread = threading.Thread(target=slow_turn, daemon=True)
    thread.start()
    assert started.wait(30)
    assert value(scrape(a.base_url), "memproxy_turns_in_flight") == 1
    b.kill()
    thread.join(30)
    after = scrape(a.base_url)
    assert value(after, "memproxy_turns_in_flight") == 0
    # B's finished requests still count: counters never go back.
    assert value(after, "memproxy_requests_total", route="chat_completions", status="200") >= 5


def test_shared_directory_is_private_fresh_and_removed() -> None:
    outer = os.environ.get(metrics_mp.ENV)
    with metrics_mp.shared_directory() as first:
        assert os.environ[metrics_mp.ENV] == first and os.listdir(first) == []
        Path(first, "counter_1.db").write_bytes(b"")
    with metrics_mp.shared_directory() as second:
        assert second != first
    assert not os.path.exists(first) and not os.path.exists(second)
    assert os.environ.get(metrics_mp.ENV) == outer
