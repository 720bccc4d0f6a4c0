"""Served requests leave no reference cycles: what a turn or a relay allocates is freed by reference counting.

A cycle per request is garbage only Python's collector can free, with everything it reaches (a request's
scope, its server cycle, tracebacks and frames): young collections then walk it all, on the event loop.
The whole app runs in process (its lifespan, DuckDB, the journal) against a real upstream socket server.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import tempfile
from collections.abc import Iterator

import httpx
import pytest

from bench.relay_cost import BODY, CLIENT_HEADERS, Upstream, call
from bench.seed import TEMPLATE_AGENT
from bench.turn_cost import agent_answer, turn_body


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """Collector off, and what it finds kept in `gc.garbage` instead of freed, for the test to look at."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_streamed_agent_turns_and_relayed_answers_leave_no_cycles(saved_garbage: list[object]) -> None:
    from proxy.app import build_app
    from proxy.config import Settings

    loop = asyncio.get_running_loop()
    agent_upstream = await loop.create_server(lambda: Upstream([0], agent_answer()), "127.0.0.1", 0)
    port = agent_upstream.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="memproxy-cycles-") as data_dir:
        app = build_app(Settings.load({"data_dir": data_dir, "upstream_url": f"http://127.0.0.1:{port}/v1"},
                                      environ={}))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://memproxy") as http:
                made = await http.post("/v1/agents/", json=TEMPLATE_AGENT)
                agent_id = made.json()["id"]
            for i in range(3):  # warm: the upstream connection, the agent's caches
                await call(app, turn_body(agent_id, i), CLIENT_HEADERS)
                await call(app, BODY, CLIENT_HEADERS)
            gc.collect()
            saved_garbage.clear()
            sizes = []
            for i in range(3, 23):
                sizes.append(await call(app, turn_body(agent_id, i), CLIENT_HEADERS))  # agent turns
                sizes.append(await call(app, BODY, CLIENT_HEADERS))  # relayed for a non-agent model
            await asyncio.sleep(0.05)  # the watchers' last steps
            gc.collect()
            found = collections.Counter(type(o).__name__ for o in saved_garbage)
    agent_upstream.close()
    assert all(size > 0 for size in sizes)
    assert found == {}, f"objects left in reference cycles by 40 requests: {dict(found.most_common(12))}"
