"""bench.cold times each agent's first turn and the one after it, and another stream's gaps while agents load."""

from __future__ import annotations

from pathlib import Path

import pg
import pytest

from bench import cold


@pytest.mark.parametrize("stall_upstream", ["fixed", "sim"])
async def test_a_small_cold_run_times_every_first_turn_and_the_stream_beside_them(
        tmp_path: Path, stall_upstream: str) -> None:
    r = await cold.measure(tmp_path, size=300, agents=2, spacing=0.1, stall_upstream=stall_upstream)
    c, s = r["cold"], r["stall"]
    assert s["upstream"] == stall_upstream
    assert c["errors"] == 0 and s["errors"] == 0
    assert c["loads"] == 2  # each agent was read from the store at its first turn, none before, none twice
    assert len(c["cold_ttft_ms"]) == len(c["warm_ttft_ms"]) == 2
    assert all(t > 0 for t in c["cold_ttft_ms"] + c["warm_ttft_ms"])
    assert all(e >= t for e, t in zip(c["cold_e2e_ms"], c["cold_ttft_ms"]))
    assert c["cold_ttft"]["min"] <= c["cold_ttft"]["median"] <= c["cold_ttft"]["max"]
    assert s["gaps"] > 0 and s["small_turns"] > 0
    assert 0 < s["gap_p50_ms"] <= s["gap_p99_ms"] <= s["gap_max_ms"]
    assert len(s["cold_ttft_ms"]) == 2 and all(t > 0 for t in s["cold_ttft_ms"])


async def test_on_postgres_the_agents_load_from_their_schema_and_it_is_dropped_after(
        tmp_path: Path, postgres_url: str) -> None:
    before = await pg.bench_schemas(postgres_url)
    r = await cold.measure(tmp_path, size=300, agents=2, spacing=0.1, database_url=postgres_url, postgres=True)
    c, s = r["cold"], r["stall"]
    assert c["errors"] == 0 and s["errors"] == 0 and c["loads"] == 2
    assert all(t > 0 for t in c["cold_ttft_ms"] + c["warm_ttft_ms"] + s["cold_ttft_ms"])
    assert s["gaps"] > 0
    assert await pg.bench_schemas(postgres_url) == before
