"""bench.steady drives one memproxy and reads its CPU per turn and per thread from /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import steady


async def test_a_short_steady_window_counts_turns_and_their_cpu(tmp_path: Path) -> None:
    r = await steady.measure(tmp_path, size=20, agents=4, concurrency=2, warmup=0.3, seconds=0.6)
    assert r["errors"] == 0 and r["turns"] > 10
    assert r["cpu_ms_per_turn"] > 0 and r["user_ms_per_turn"] > 0
    assert r["thread_ms_per_turn"]["event_loop"] > 0  # the main thread, named so by bench.procs
    assert sum(r["thread_ms_per_turn"].values()) == pytest.approx(r["cpu_ms_per_turn"])  # the threads add up
