"""bench.steady drives one memproxy and reads its CPU per turn and per thread from /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import steady


async def test_a_short_steady_window_counts_turns_and_their_cpu(tmp_path: Path) -> None:
    r = await steady.measure(tmp_path, size=20, agents=4, concurrency=2, warmup=0.2, seconds=0.3)
    assert r["errors"] == 0 and r["turns"] > 10
    assert r["cpu_ms_per_turn"] > 0 and r["user_ms_per_turn"] > 0
    threads = r["thread_ms_per_turn"]
    assert threads["event_loop"] > 0  # the main thread, named so by bench.procs
    # The window's turns are applied to DuckDB's tables up to APPLY_DELAY_S after them: the window waits for
    # that, so the store's thread has work in it. (Only 300 or so turns: below APPLY_AT, none would be applied in
    # a window that ended a second after its turns.)
    assert threads.get("duckdb", 0) > 0
    idle_per_turn = r["idle_ms_per_s"] * r["seconds_measured"] / r["turns"]
    assert sum(threads.values()) - idle_per_turn == pytest.approx(r["cpu_ms_per_turn"])  # the threads add up
