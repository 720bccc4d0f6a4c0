"""MEMPROXY_MEMORY_REPORT_INTERVAL: a running server logs where its memory is, sizes and counts only."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from helpers import ON_POSTGRES, create_agent
from memory.heap_report import report_every

SECRET = "the-user-said-xyzzy-42"


@pytest.mark.skipif(ON_POSTGRES, reason="DuckDB's and LanceDB's figures: the embedded backend only")
def test_server_logs_memory_figures_and_never_content(make_server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="memproxy.memory.report")
    server = make_server(memory_report_interval=0.05)
    agent = create_agent(server.base_url)
    reply = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=30,
                       json={"model": agent, "messages": [{"role": "user", "content": SECRET}]})
    assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 30
    line = ""
    while time.monotonic() < deadline:  # the report runs on the server's loop: wait for one after the turn
        lines = [r.getMessage() for r in caplog.records if r.name == "memproxy.memory.report"]
        line = next((m for m in reversed(lines) if "agents=1 " in m), "")
        if line:
            break
        time.sleep(0.05)
    assert line.startswith("memory: rss=")
    fields = dict(part.split("=", 1) for part in line.removeprefix("memory: ").split())
    for key in ("rss", "anonymous", "threads", "fds", "duckdb", "duckdb_wal", "lance_cache", "recall_queue",
                "agents", "agent_messages", "blocks"):
        assert key in fields, key
    assert all(float(value) >= 0 for value in fields.values())  # sizes and counts, nothing else
    assert SECRET not in caplog.text


async def test_zero_interval_means_no_report_loop_at_all() -> None:
    await asyncio.wait_for(report_every(0, []), 1)  # returns at once instead of looping
