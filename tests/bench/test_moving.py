"""bench.moving measures turns that stay on one process against turns that move between two, and cleans up."""

from __future__ import annotations

from pathlib import Path

import pg
import redis

from bench import moving


async def test_a_small_run_moves_every_turn_of_the_moving_arm_and_leaves_nothing_behind(
        tmp_path: Path, postgres_url: str, redis_url: str) -> None:
    before = await pg.bench_schemas(postgres_url)
    r = await moving.measure(tmp_path, size=60, agents=2, rounds=2, database_url=postgres_url, redis_url=redis_url,
                             net_delay_ms=1)  # PostgreSQL and Redis through the delaying relay
    assert r["errors"] == 0 and r["rtt_ms"] >= 2  # at least a millisecond each way
    sticky, moved = r["sticky"], r["moving"]
    assert sticky["turns"] == moved["turns"] == 4 and sticky["errors"] == moved["errors"] == 0
    assert sticky["loads_per_turn"] == 0  # each agent stayed where its copy was current
    # Each moved turn found a copy the other process's turns had made stale, and loaded the agent once.
    assert moved["loads_per_turn"] == moved["refreshes_per_turn"] == 1
    for arm in (sticky, moved):
        assert arm["cpu_ms_per_turn"] > 0 and 0 < arm["ttft_p50_ms"] <= arm["e2e_p50_ms"]
    assert await pg.bench_schemas(postgres_url) == before
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match="memproxy-bench-moving-*"))
    finally:
        client.close()
