"""bench.pg_recall_cost runs the store commit's own recall upsert against a filled recall table, and cleans up."""

from __future__ import annotations

import asyncpg

from bench import pg_recall_cost


async def _idxcost_databases(url: str) -> set[str]:
    con = await asyncpg.connect(url, timeout=3)
    try:
        rows = await con.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'memproxy_test_idxcost_%'")
        return {row[0] for row in rows}
    finally:
        await con.close()


async def test_the_recall_upsert_is_timed_on_a_filled_table_and_its_database_dropped(postgres_url: str) -> None:
    before = await _idxcost_databases(postgres_url)
    r = await pg_recall_cost.measure(1000, 5, base_url=postgres_url)
    assert r["rows"] == 1000 and r["backend_cpu_ms_per_turn"] >= 0
    assert 0 < r["upsert_ms"]["p50"] <= r["upsert_ms"]["max"]  # type: ignore[index]
    assert await _idxcost_databases(postgres_url) == before
