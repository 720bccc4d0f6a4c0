"""Resumable runs: what writing every event to Redis first adds to an agent turn's TTFT and e2e.

One memproxy with Redis; rounds of three requests back to back in rotated order: direct (simulator),
an agent turn, and an agent turn with `X-Memproxy-Resumable: 1` (on a second agent of the same shape).
Added TTFT is paired per round against the direct request, as in the latency suite; the resumable
cost is the paired difference of the two agent turns. Zero-delay simulator, 12 tokens.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from bench import seed
from bench.harness import Harness
from bench.loadgen import Result, close_all, open_conns
from bench.procs import start_memproxy
from bench.stats import paired_diffs, summary
from bench.suite import SuiteResult, Table
from bench.suites.common import agent_request, direct_request, warm_agents

REDIS_URL = os.environ.get("MEMPROXY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
KINDS = ("direct", "agent", "resumable")


async def run(h: Harness) -> SuiteResult:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - no Redis, no figures: say why
        return SuiteResult(notes=[f"resumable: skipped, Redis not reachable at {REDIS_URL}: {exc}"])
    rounds = h.scale.toolstep_turns
    per_agent = h.scale.turns_per_agent
    count = -(-rounds // per_agent)
    data = h.new_data_dir("resumable")
    ids = seed.clone_agents(data, h.template_id, 2 * count, seed.IN_CONTEXT - 2, tag="resumable")
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    h.stop_memproxy()
    h.memproxy = start_memproxy(h.log_dir, data, h.upstream, ["--redis-url", REDIS_URL, "--redis-prefix", prefix])
    try:
        await warm_agents(h, ids)
        h.log(f"resumable: {rounds} rounds of (direct, agent, resumable agent)")
        zero = h.profile("zero")
        assert h.sim is not None
        sim = (await open_conns(h.sim.port, 1))[0]
        conn = (await open_conns(h.memproxy.port, 1))[0]
        results: dict[str, dict[Any, Result]] = {k: {} for k in KINDS}
        for r in range(rounds):
            plain_agent, resumable_agent = ids[2 * (r // per_agent)], ids[2 * (r // per_agent) + 1]
            requests = {"direct": (sim, direct_request(zero)), "agent": (conn, agent_request(plain_agent, zero)),
                        "resumable": (conn, agent_request(resumable_agent, {**zero, "X-Memproxy-Resumable": "1"}))}
            order = KINDS[r % 3:] + KINDS[:r % 3]
            for kind in order:
                target, request = requests[kind]
                results[kind][r] = await target.send(request, kind)
        close_all([sim, conn])
    finally:
        h.stop_memproxy()
        _drop_keys(prefix)

    def ttft(kind: str) -> dict[Any, float | None]:
        return {k: r.ttft_ms for k, r in results[kind].items() if r.ok}

    def e2e(kind: str) -> dict[Any, float | None]:
        return {k: r.e2e_ms for k, r in results[kind].items() if r.ok}

    figures = {
        "rounds": rounds,
        "errors": {k: sum(not r.ok for r in results[k].values()) for k in KINDS},
        "added_ttft_ms": {k: summary(paired_diffs(ttft(k), ttft("direct"))) for k in ("agent", "resumable")},
        "added_e2e_ms": {k: summary(paired_diffs(e2e(k), e2e("direct"))) for k in ("agent", "resumable")},
        "resumable_minus_agent_ttft_ms": summary(paired_diffs(ttft("resumable"), ttft("agent"))),
        "resumable_minus_agent_e2e_ms": summary(paired_diffs(e2e("resumable"), e2e("agent"))),
        "server_timing_ms": {k: summary(r.server_ms for r in results[k].values() if r.ok)
                             for k in ("agent", "resumable")},
    }
    result = SuiteResult(figures=figures)
    headers = ["measure", "n", "p50", "p90", "p99", "max"]

    def row(label: str, s: dict[str, float]) -> list[Any]:
        return [label, s["n"], s["p50"], s["p90"], s["p99"], s["max"]]

    result.tables = [Table("Resumable runs (ms; zero-delay simulator, concurrency 1)", headers, [
        row("added TTFT, agent turn", figures["added_ttft_ms"]["agent"]),
        row("added TTFT, resumable agent turn", figures["added_ttft_ms"]["resumable"]),
        row("resumable - plain agent TTFT (paired)", figures["resumable_minus_agent_ttft_ms"]),
        row("added e2e, agent turn", figures["added_e2e_ms"]["agent"]),
        row("added e2e, resumable agent turn", figures["added_e2e_ms"]["resumable"]),
        row("resumable - plain agent e2e (paired)", figures["resumable_minus_agent_e2e_ms"]),
        row("Server-Timing memproxy, agent", figures["server_timing_ms"]["agent"]),
        row("Server-Timing memproxy, resumable", figures["server_timing_ms"]["resumable"]),
    ])]
    result.notes.append("A resumable turn registers its run in Redis before the turn (one round trip), binds it "
                        "to the turn lock after taking it (one more), and writes every batch of events to Redis "
                        "before sending it (one round trip per batch); a plain turn does none of these.")
    h.log(f"resumable: added TTFT p50 agent {figures['added_ttft_ms']['agent']['p50']:.2f} ms, resumable "
          f"{figures['added_ttft_ms']['resumable']['p50']:.2f} ms")
    return result


def _drop_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
