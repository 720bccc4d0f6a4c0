"""bench.pg_load loads agents from nothing through the delaying relay, each whole, and cleans up."""

from __future__ import annotations

import pg

from bench import pg_load


async def test_loads_from_nothing_are_timed_and_leave_nothing_behind(postgres_url: str) -> None:
    before = await pg.bench_schemas(postgres_url)
    r = await pg_load.measure(postgres_url, agents=3, blocks=2, messages=6, net_delay_ms=1)
    assert r["loads"] == 2  # the first agent warms the pool up
    assert 2 <= r["p50_ms"] <= r["p90_ms"] <= r["max_ms"]  # at least one round trip through the relay
    assert await pg.bench_schemas(postgres_url) == before
