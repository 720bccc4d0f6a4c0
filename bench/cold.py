"""`python -m bench.cold`: a freshly loaded agent's first turn, and what it does to another stream meanwhile.

An agent memproxy has not loaded (after a restart, or once it left the live cache) reads, encodes and counts
its whole in-context history at its first turn. Two measurements, each on its own memproxy whose `--agents`
agents (`--size` messages, all in context, a window too large to compact) are cloned into its data dir before
it starts and not touched before their first turn; only the template agent warms the process up.
`cold`: against `bench.fixed_upstream`, each agent in turn is sent one streamed turn (the cold one) then at
once another (the warm one): TTFT and end-to-end of both, and how many agents memproxy loaded meanwhile.
`stall`: a 50-message agent streams turns back to back on one connection while the big agents take their first
turns `--spacing` seconds apart; its gaps between chunks while they do, p50 / p99 / max. Its upstream paces
every answer at 5 ms between tokens: `bench.fixed_upstream` by default, which looks into no body, so the gaps
are memproxy's own; `--stall-upstream sim`, the simulator (40 tokens), which also parses and walks each big
agent's body on the same two cores, stalling its own streams meanwhile (how the first figures were taken). Compare two checkouts by running it from outside both with `PYTHONPATH`
at each, alternated: this machine's speed moves by tens of percent between minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import seed
from bench.harness import FULL, Harness
from bench.loadgen import Result, close_all, open_conns
from bench.pgbench import PgBench
from bench.procs import Proc, agent_cache_counts, start_fixed_upstream, start_memproxy
from bench.stats import summary
from bench.suites.common import agent_request, warm_agents
from bench.suites.turncost import WINDOW

# The upstream's pace for the stall measurement, set per request (memproxy passes X-Sim-* on); the fixed upstream
# always answers 12 pieces.
STALL_PROFILE = {"X-Sim-Ttft-Ms": "0", "X-Sim-Token-Delay-Ms": "5", "X-Sim-Reply-Tokens": "40"}
SMALL = 50  # in-context messages of the agent whose stream is watched


def clone(h: Harness, data: Path, count: int, size: int, tag: str) -> list[str]:
    """`count` agents with `size` stored messages, every one in context, in the harness's backend."""
    return h.clone_agents(data, count, size, tag, in_context=size, context_window=WINDOW)


async def serve(h: Harness, data: Path, upstream: str) -> Proc:
    """A memproxy on `data`, its recall indexed first (PostgreSQL's clone wrote its recall rows)."""
    if h.pg is not None:
        return start_memproxy(h.log_dir, data, upstream, ["--database-url", h.pg.url_for(data)])
    await seed.index_recall(data)
    return start_memproxy(h.log_dir, data, upstream)


def cache_loads(proc: Proc) -> int:
    """How many agents memproxy has read from its store into the live cache so far (its /metrics)."""
    counts = agent_cache_counts(proc.base)
    if "loads" not in counts:
        raise RuntimeError("memproxy's /metrics has no memproxy_agent_cache_loads_total")
    return int(counts["loads"])


async def warm_process(h: Harness, proc: Proc) -> int:
    """Two turns of the template agent (first-request costs of the process, none of a measured agent's); errors."""
    return await warm_agents(h, [h.template_id] * 2, concurrency=1, port=proc.port)


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max: a handful of agents, too few for percentiles."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)} if values else {}


async def measure_cold_warm(h: Harness, size: int, agents: int) -> dict[str, Any]:
    """Each agent's first turn, then its second at once, one agent at a time, against the fixed upstream."""
    upstream = proc = None
    try:
        upstream = start_fixed_upstream(h.log_dir)
        data = h.new_data_dir("cold")
        ids = clone(h, data, agents, size, "cold")
        proc = await serve(h, data, upstream.base + "/v1")
        errors = await warm_process(h, proc)
        headers = {**h.profile("zero"), "X-Sim-Ttft-Ms": "0"}
        [conn] = await open_conns(proc.port, 1)
        cold: list[Result] = []
        warm: list[Result] = []
        loads_before = cache_loads(proc)
        for agent in ids:
            cold.append(await conn.send(agent_request(agent, headers), "cold"))
            warm.append(await conn.send(agent_request(agent, headers), "warm"))
        loads = cache_loads(proc) - loads_before
        close_all([conn])
    finally:
        if proc is not None:
            proc.stop()
        if upstream is not None:
            upstream.stop()
    errors += sum(not r.ok for r in cold + warm)
    cold_ttft = [r.ttft_ms or 0.0 for r in cold]
    warm_ttft = [r.ttft_ms or 0.0 for r in warm]
    return {"size": size, "agents": agents, "errors": errors, "loads": loads,
            "cold_ttft_ms": cold_ttft, "cold_e2e_ms": [r.e2e_ms for r in cold], "warm_ttft_ms": warm_ttft,
            "warm_e2e_ms": [r.e2e_ms for r in warm], "cold_ttft": spread(cold_ttft), "warm_ttft": spread(warm_ttft)}


def gaps_between(result: Result, start: float, end: float) -> list[float]:
    """The stream's gaps between chunks (ms) that ended between `start` and `end` (perf_counter seconds)."""
    if result.ttft_ms is None:
        return []
    at, out = result.started + result.ttft_ms / 1000, []
    for gap in result.gaps_ms:
        at += gap / 1000
        if start <= at <= end:
            out.append(gap)
    return out


async def measure_stall(h: Harness, size: int, agents: int, spacing: float,
                        upstream_kind: str = "fixed") -> dict[str, Any]:
    """A small agent's stream gaps while the big agents take their first turns `spacing` s apart; `upstream_kind`
    "fixed" (`bench.fixed_upstream`, paced) or "sim" (the harness's simulator)."""
    upstream = proc = None
    try:
        data = h.new_data_dir("stall")
        [small] = clone(h, data, 1, SMALL, "small")
        ids = clone(h, data, agents, size, "big")
        if upstream_kind == "fixed":
            upstream = start_fixed_upstream(h.log_dir)
        proc = await serve(h, data, h.upstream if upstream is None else upstream.base + "/v1")
        errors = await warm_process(h, proc) + await warm_agents(h, [small], port=proc.port)
        [watched] = await open_conns(proc.port, 1)
        conns = await open_conns(proc.port, agents)
        stop = asyncio.Event()
        streams: list[Result] = []

        async def watch() -> None:
            """The small agent's turns on one connection, back to back, until the cold turns are over."""
            while not stop.is_set():
                streams.append(await watched.send(agent_request(small, STALL_PROFILE), "small"))

        async def cold_turn(i: int) -> Result:
            await asyncio.sleep(max(0.0, start + i * spacing - time.perf_counter()))
            return await conns[i].send(agent_request(ids[i], STALL_PROFILE), "cold")

        watching = asyncio.create_task(watch())
        await asyncio.sleep(spacing)  # the small stream is under way before the first cold turn
        start = time.perf_counter()
        cold = await asyncio.gather(*(cold_turn(i) for i in range(agents)))
        end = time.perf_counter()
        stop.set()
        await watching
        close_all([watched], conns)
    finally:
        if proc is not None:
            proc.stop()
        if upstream is not None:
            upstream.stop()
    errors += sum(not r.ok for r in [*streams, *cold])
    gaps = [g for r in streams if r.ok for g in gaps_between(r, start, end)]
    stats = summary(gaps)
    return {"size": size, "agents": agents, "spacing_s": spacing, "upstream": upstream_kind, "errors": errors,
            "window_s": end - start,
            "small_turns": len(streams), "gaps": int(stats["n"]), "gap_p50_ms": stats["p50"],
            "gap_p99_ms": stats["p99"], "gap_max_ms": stats["max"], "cold_ttft_ms": [r.ttft_ms or 0.0 for r in cold]}


async def measure(work: Path, size: int, agents: int, spacing: float, stall: bool = True,
                  database_url: str | None = None, postgres: bool = False,
                  stall_upstream: str = "fixed") -> dict[str, Any]:
    """Both measurements on one simulator and template; `stall=False` leaves the second out. With `postgres`,
    every memproxy serves a schema of its own in `database_url` (else a throwaway database), dropped after."""
    h = Harness(work, FULL)
    if postgres:
        h.pg = PgBench(database_url)
    try:
        h.start()
        out = {"cold": await measure_cold_warm(h, size, agents)}
        if stall:
            out["stall"] = await measure_stall(h, size, agents, spacing, stall_upstream)
    finally:
        h.close()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cold", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=5000, help="in-context messages per agent (default 5000)")
    parser.add_argument("--agents", type=int, default=6, help="agents loaded, one cold turn each (default 6)")
    parser.add_argument("--spacing", type=float, default=0.3, help="seconds between the stall's cold turns (0.3)")
    parser.add_argument("--skip-stall", action="store_true", help="measure only the cold and warm turns")
    parser.add_argument("--stall-upstream", choices=["fixed", "sim"], default="fixed",
                        help="the stall's upstream: bench.fixed_upstream, paced (default), or the simulator")
    parser.add_argument("--backend", choices=["embedded", "postgres"], default="embedded",
                        help="where the agents are stored (default embedded)")
    parser.add_argument("--database-url", default=None,
                        help="--backend postgres: the database to work in (a schema per memproxy, dropped after); "
                             "default a throwaway database on the local server")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memproxy-cold-") as work:
        r = asyncio.run(measure(Path(work), args.size, args.agents, args.spacing, stall=not args.skip_stall,
                                database_url=args.database_url, postgres=args.backend == "postgres",
                                stall_upstream=args.stall_upstream))
    c = r["cold"]
    print(f"{c['size']} in context, {c['agents']} agents, {args.backend} ({c['loads']} loaded, "
          f"{c['errors']} errors)")
    for name in ("cold", "warm"):
        s, each = c[f"{name}_ttft"], ", ".join(f"{v:.1f}" for v in c[f"{name}_ttft_ms"])
        print(f"  {name} TTFT ms: min {s['min']:.1f} / median {s['median']:.1f} / max {s['max']:.1f}  [{each}]")
    print("  cold end-to-end ms: " + ", ".join(f"{v:.1f}" for v in c["cold_e2e_ms"]))
    if "stall" in r:
        s = r["stall"]
        print(f"stall ({s['upstream']} upstream): {SMALL}-message stream over {s['window_s']:.2f} s while {s['agents']} agents load "
              f"{s['spacing_s']} s apart ({s['small_turns']} turns, {s['errors']} errors): {s['gaps']} gaps, "
              f"p50 {s['gap_p50_ms']:.1f} / p99 {s['gap_p99_ms']:.1f} / max {s['gap_max_ms']:.1f} ms")
        print("  their cold TTFT ms: " + ", ".join(f"{v:.1f}" for v in s["cold_ttft_ms"]))


if __name__ == "__main__":
    main()
