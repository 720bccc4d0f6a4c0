"""The bench harness end to end at tiny counts: every figure produced, every file written; no time asserted."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import orjson

from bench.compare import compare
from bench.stats import flatten
from bench.suites import SUITES
from helpers import ON_POSTGRES

ROOT = Path(__file__).resolve().parents[2]

# Figures every run must carry (a dotted prefix present with at least one finite number under it).
REQUIRED = [
    *(f"latency.{profile}.c{c}.{path}.{metric}.p99" for profile in ("zero", "realistic") for c in (1, 4)
      for path in ("direct", "passthrough", "agent") for metric in ("ttft_ms", "e2e_ms", "gap_ms")),
    *(f"latency.{profile}.c1.added.{path}.{metric}.p50" for profile in ("zero", "realistic")
      for path in ("passthrough", "agent") for metric in ("ttft_ms", "e2e_ms", "gap_ms")),
    *(f"throughput.levels.c{c}.{path}.rps" for c in (1, 4) for path in ("direct", "passthrough", "agent")),
    "throughput.levels.c4.agent_over_direct", "throughput.one_agent.rps", "throughput.max_good_concurrency",
    *(f"scaling.history.h{n}.{k}" for n in (100, 1000) for k in ("added_ttft_ms.p50", "rss_mb", "cold_ttft_ms.max")),
    *(f"scaling.agents.a{n}.{k}" for n in (10, 50) for k in ("added_ttft_ms.p99", "rss_mb", "load_s")),
    "scaling.history_growth_pct", "scaling.agents_growth_pct",
    *(f"toolstep.{kind}{k}.p99" for kind in ("", "custom_", "mcp_")
      for k in ("tool_ms", "step_gap_ms", "overhead_tool_turn_ms", "client_added_e2e_ms")),
    *(f"soak.rss_mb.{k}" for k in ("start", "warmup", "middle", "end", "warmup_end", "max_after_warmup")),
    "soak.growth_after_warmup_pct", "soak.growth_from_warmup_turns_pct", "soak.warmup_end_turns", "soak.flat",
    "soak.turns_per_s",
    *(f"turncost.agent.m{n}.{kind}{k}" for n in (20, 200) for kind in ("", "sequential.", "paced.", "paced.sequential.")
      for k in ("cpu_ms_per_turn", "user_ms_per_turn", "kernel_ms_per_turn")),
    "turncost.agent.m200.vs_smallest", "turncost.agent.m200.paced.vs_smallest",
    "turncost.passthrough.cpu_ms_per_request",
    *(f"indexcost.recall.n{n}.{k}" for n in (200, 2000)
      for k in ("indexer_ms_per_turn", "process_ms_per_turn", "search.latency_ms.p50")),
]


def test_smoke_run_produces_every_figure(tmp_path: Path) -> None:
    if ON_POSTGRES:
        _smoke_on_postgres(tmp_path)
        return
    proc = subprocess.run([sys.executable, "-m", "bench", "all", "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "suite toolstep: done" in proc.stderr  # progress lines go to stderr

    [json_path] = tmp_path.glob("*.json")
    doc = orjson.loads(json_path.read_bytes())
    assert set(doc["figures"]) == set(SUITES)
    for key in ("cpu_model", "cores", "memory_mb", "python", "packages", "git_commit"):
        assert key in doc["machine"]

    flat = flatten(doc["figures"])
    missing = [key for key in REQUIRED if key not in flat]
    assert not missing, missing
    not_finite = {key: value for key, value in flat.items() if not math.isfinite(value)}
    assert not not_finite, not_finite
    assert doc["targets"] and all({"target", "value", "limit", "met"} <= set(t) for t in doc["targets"])

    md_path = json_path.with_suffix(".md")
    assert md_path.read_text().startswith("# memproxy bench")
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert any(p.endswith("-latency-cdf.png") for p in pngs), pngs
    assert any(p.endswith("-scaling.png") for p in pngs), pngs
    assert any(p.endswith("-soak.png") for p in pngs), pngs
    assert doc["figures"]["soak"]["errors"] == 0 and doc["figures"]["soak"]["turns"] == 120
    assert len(doc["samples"]["soak"]["rss_mb"]) == 1 + 120 // 20  # one RSS sample at start, then every 20 turns
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000

    table = compare(json_path, json_path)
    assert "latency.zero.c1.added.agent.ttft_ms.p50" in table


def _smoke_on_postgres(tmp_path: Path) -> None:
    """`--backend postgres` with no URL: the latency and throughput suites on a throwaway database, then dropped."""
    import asyncpg
    import pg

    from bench.__main__ import POSTGRES_SUITES

    async def bench_databases() -> list[str]:
        con = await asyncpg.connect(pg.DEFAULT_ADMIN_URL, timeout=3)
        try:
            return [r[0] for r in await con.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'memproxy_bench_%'")]
        finally:
            await con.close()

    before = set(pg.run_blocking(bench_databases()))
    proc = subprocess.run([sys.executable, "-m", "bench", "all", "--smoke", "--backend", "postgres", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "backend postgresql postgresql://postgres@127.0.0.1:5432/memproxy_bench_" in proc.stderr
    [json_path] = tmp_path.glob("*.json")
    doc = orjson.loads(json_path.read_bytes())
    assert doc["backend"] == "postgres" and set(doc["figures"]) == set(POSTGRES_SUITES)
    flat = flatten(doc["figures"])
    wanted = [key for key in REQUIRED if key.split(".")[0] in POSTGRES_SUITES]
    missing = [key for key in wanted if key not in flat]
    assert not missing, missing
    errors = {key: value for key, value in flat.items() if key.endswith("errors") and value}
    assert not errors, errors
    assert set(pg.run_blocking(bench_databases())) == before  # the throwaway database is gone
    refused = subprocess.run([sys.executable, "-m", "bench", "soak", "--smoke", "--backend", "postgres"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "runs only the latency, throughput suites" in refused.stderr
