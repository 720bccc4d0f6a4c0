"""Served requests leave no reference cycles: what a turn or a relay allocates is freed by reference counting.

A cycle per request is garbage only Python's collector can free, with everything it reaches (a request's
scope, its server cycle, tracebacks and frames): young collections then walk it all, on the event loop.
The whole app runs in process (its lifespan, DuckDB, the journal) against a real upstream socket server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
from collections.abc import Iterator

from bench.relay_cost import BODY, CLIENT_HEADERS, call, running_app
from bench.turn_cost import agent_answer, make_agents, turn_body


@contextlib.contextmanager
def saved_garbage() -> Iterator[list[object]]:
    """Collector off, and what it finds from here on kept in `gc.garbage` instead of freed, to look at."""
    gc.collect()  # what came before (set-up, the API client that made the agent) is freed for real
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_streamed_agent_turns_and_relayed_answers_leave_no_cycles() -> None:
    async with running_app(agent_answer(), prefix="memproxy-cycles-") as (app, _):
        (agent_id,) = await make_agents(app, 1)
        for i in range(3):  # warm: the upstream connection, the agent's caches
            await call(app, turn_body(agent_id, i), CLIENT_HEADERS)
            await call(app, BODY, CLIENT_HEADERS)
        await asyncio.sleep(0.05)  # the warm-up's last steps
        with saved_garbage() as garbage:
            sizes = []
            for i in range(3, 23):
                sizes.append(await call(app, turn_body(agent_id, i), CLIENT_HEADERS))  # agent turns
                sizes.append(await call(app, BODY, CLIENT_HEADERS))  # relayed for a non-agent model
            await asyncio.sleep(0.05)  # the watchers' last steps
            gc.collect()
            found = collections.Counter(type(o).__name__ for o in garbage)
    assert all(size > 0 for size in sizes)
    assert found == {}, f"objects left in reference cycles by 40 requests: {dict(found.most_common(12))}"
