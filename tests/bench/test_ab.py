"""bench.ab runs two checkouts' memproxies side by side and reads each one's TTFT and CPU per request."""

from __future__ import annotations

from pathlib import Path

from bench import ab

REPO = str(Path(__file__).resolve().parents[2])


async def test_two_sides_answer_alternated_requests_and_are_measured_apart(tmp_path: Path) -> None:
    r = await ab.measure(tmp_path, REPO, REPO, rounds=12, agents=2, size=10, warmup=2)
    assert set(r) == {"passthrough", "agent"}
    for sides in r.values():
        assert set(sides) == {"A", "B"}
        for figures in sides.values():
            assert figures["errors"] == 0
            assert 0 < figures["ttft_p50_ms"] <= figures["ttft_p99_ms"]
            assert figures["cpu_ms_per_request"] > 0


async def test_gap_ms_pauses_after_every_request(tmp_path: Path) -> None:
    r = await ab.measure(tmp_path, REPO, REPO, rounds=4, agents=2, size=10, warmup=1, gap_ms=100)
    for sides in r.values():
        for figures in sides.values():
            assert figures["errors"] == 0
            # 4 rounds x 2 sides, each request followed by 0.1 s; without the pauses they take a few ms.
            assert figures["seconds"] >= 4 * 2 * 0.1
