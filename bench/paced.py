"""CPU per agent turn at a paced rate: turns one at a time, the simulator taking `--delay-ms` to answer each.

`python -m bench turncost` drives memproxy as fast as the simulator answers, which is the cheapest a turn
gets: many turns share each wake-up and batched write. A deployment's upstream takes tens to hundreds of
milliseconds, so memproxy idles between turns; this measures that case. Each turn goes to the next of
`--agents` agents (`--size` messages in context). CPU is memproxy's, from /proc in ns, over the turns and
until memproxy is idle again: in all, its idle rate (measured first) taken off, and per thread (the event
loop, and the others by the names memproxy gives them: journal, duckdb, lance-*; "memproxy" for the rest).

    python -m bench.paced --size 50 --delay-ms 50 --turns 96
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import seed
from bench.harness import FULL, Harness
from bench.loadgen import open_conns
from bench.procs import cpu_ns_since, thread_cpu_ns
from bench.suites.common import agent_request, idle_rate, settle, wait_quiet, warm_agents


async def measure(size: int, delay_ms: float, turns: int, agents: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="memproxy-paced-"))
    h = Harness(work_dir=work, scale=FULL)
    h.start()
    try:
        data = h.new_data_dir(f"paced{size}")
        ids = seed.clone_agents(data, h.template_id, agents, size, tag=f"paced{size}", in_context=size,
                                context_window=4_000_000)
        await seed.index_recall(data)
        mp = h.start_memproxy(data)
        await warm_agents(h, ids)
        await wait_quiet(mp)
        idle = await idle_rate(mp)
        [conn] = await open_conns(mp.port, 1)
        headers = {**h.profile("zero"), "X-Sim-Ttft-Ms": f"{delay_ms:.2f}"}
        e2e: list[float] = []
        errors = 0
        before = thread_cpu_ns(mp.pid)
        t0 = time.perf_counter()
        for i in range(turns):
            result = await conn.send(agent_request(ids[i % len(ids)], headers), "agent")
            errors += not result.ok
            if result.ok:
                e2e.append(result.e2e_ms)
        wall = time.perf_counter() - t0
        await settle(mp)
        elapsed = time.perf_counter() - t0
        conn.close()
        used = cpu_ns_since(mp.pid, before)
        # Idle work is spread over the threads; it is taken off the total only.
        total = sum(used.values()) - idle * elapsed
        figures = {"size": size, "delay_ms": delay_ms, "turns": turns, "errors": errors,
                   "turns_per_s": turns / wall, "e2e_p50_ms": statistics.median(e2e) if e2e else float("nan"),
                   "cpu_ms_per_turn": total / 1e6 / turns, "idle_ms_per_s": idle / 1e6}
        for name, ns in sorted(used.items(), key=lambda item: -item[1]):
            if ns:
                figures[f"{name}_ms_per_turn"] = ns / 1e6 / turns
        return figures
    finally:
        h.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paced", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=50, help="in-context messages per agent (default 50)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="the simulator's time to answer (default 50)")
    parser.add_argument("--turns", type=int, default=96, help="turns to measure (default 96)")
    parser.add_argument("--agents", type=int, default=32, help="agents they rotate over (default 32)")
    args = parser.parse_args(argv)
    import uvloop

    figures = uvloop.run(measure(args.size, args.delay_ms, args.turns, args.agents))
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
