"""bench.pg_commits commits turns, memory edits or compactions from several writers, near or through the delaying
relay, and cleans up."""

from __future__ import annotations

import pg
import pytest

from bench import pg_commits


@pytest.mark.parametrize("write", pg_commits.WRITES)
async def test_writers_commit_in_shared_transactions_and_leave_nothing_behind(postgres_url: str, write: str) -> None:
    before = await pg.bench_schemas(postgres_url)
    r = await pg_commits.measure(postgres_url, concurrency=4, seconds=0.5, net_delay_ms=1, write=write)
    assert r["commits"] > 4 and r["per_second"] > 0
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
    assert r["turns_per_transaction"] >= 1 and r["cpu_ms_per_commit"] > 0
    assert await pg.bench_schemas(postgres_url) == before
