"""The settings that bound memproxy's memory reach the pieces that hold it."""

from __future__ import annotations

import httpx
import pytest

from helpers import ON_POSTGRES, create_agent


@pytest.mark.skipif(ON_POSTGRES, reason="DuckDB's and LanceDB's memory bounds: the embedded backend only")
def test_memory_bounds_reach_the_runtime(make_server) -> None:
    server = make_server(agent_cache_size=3, duckdb_memory_limit="96MB", search_cache_mb=1,
                         search_optimize_interval=7.0, malloc_trim_interval=60.0)
    rt = server.rt
    agents = [create_agent(server.base_url) for _ in range(5)]
    for agent in agents:
        reply = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=30,
                           json={"model": agent, "messages": [{"role": "user", "content": "hi"}]})
        assert reply.status_code == 200, reply.text
    assert len(rt.memory._agents) == 3  # the two least recently used were dropped...
    again = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=30,
                       json={"model": agents[0], "messages": [{"role": "user", "content": "still there?"}]})
    assert again.status_code == 200  # ...and reload from the store on their next turn
    history = httpx.get(f"{server.base_url}/v1/agents/{agents[0]}/messages", params={"limit": 100}).json()
    assert sum(m["message_type"] == "user_message" for m in history) == 2

    def limit(con) -> str:
        return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    assert server.call(rt.store._run(limit)) == "91.5 MiB"  # 96 MB as DuckDB prints it
    assert rt.longterm.optimize_interval == 7.0
    server.call(rt.longterm.flush())
    assert rt.longterm.cache_bytes <= 1.1 * 1024 * 1024
    assert rt.heap_trimmer is not None and not rt.heap_trimmer.done()


def test_what_start_up_loaded_is_kept_out_of_collections_while_the_server_runs(make_server) -> None:
    import gc

    threshold = gc.get_threshold()
    server = make_server()
    frozen = gc.get_freeze_count()
    # The runtime's own objects are among them: a loaded agent cache, the store, the app's routes.
    assert frozen > 50_000, frozen
    assert not any(obj is server.rt for obj in gc.get_objects())  # frozen: in no generation the collector scans
    assert gc.get_threshold()[0] == 2000
    server.stop()
    assert gc.get_freeze_count() == 0  # stopping lets the runtime's objects be collected again
    assert gc.get_threshold() == threshold
