"""`python -m bench.steady`: one memproxy's CPU per agent turn over one long steady window, thread by thread.

turncost's windows are short (32 agents x 12 turns, ~0.3 s at concurrency 8) and alternated with other memproxies,
which suits comparing history sizes under one drift; the threads beside the event loop (the store applying its
journal in groups up to `APPLY_DELAY_S` apart, the recall index writing about once a second) work in bursts such
windows catch or miss. This runs one memproxy (`bench.fixed_upstream` as its upstream, `--agents` agents cloned
with `--size` messages in context and a window too large to compact), warms it for `--warmup` seconds of the same
load and lets that load's batched work finish (`SETTLE_S`, then quiet), then measures `--seconds` of turns from
`--concurrency` connections back to back and the same settling after them: CPU per turn from /proc (all threads,
the process's idle rate taken off), and raw: user and kernel time apart, and per thread name. Compare two
checkouts by running it from outside both with `PYTHONPATH` at each, alternated: this machine's speed moves by
tens of percent between minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import seed
from bench.harness import FULL, Harness
from bench.loadgen import close_all, open_conns
from bench.procs import cpu_ns_since, start_fixed_upstream, start_memproxy, thread_cpu_ns, user_system_seconds
from bench.suites.common import agent_request, idle_rate, settle, wait_quiet, warm_agents
from bench.suites.turncost import WINDOW


async def measure(work: Path, size: int, agents: int, concurrency: int, warmup: float, seconds: float) -> dict[str, Any]:
    h = Harness(work, FULL)
    h.start()
    upstream = proc = None
    try:
        upstream = start_fixed_upstream(h.log_dir)
        data = h.new_data_dir("steady")
        ids = seed.clone_agents(data, h.template_id, agents, max(size, 100), tag="steady", in_context=size,
                                context_window=WINDOW)
        await seed.index_recall(data)
        proc = start_memproxy(h.log_dir, data, upstream.base + "/v1")
        errors = await warm_agents(h, ids, port=proc.port)
        await wait_quiet(proc)  # freshly loaded histories are counted in slices after their first turn
        idle = await idle_rate(proc)
        headers = {**h.profile("zero"), "X-Sim-Ttft-Ms": "0"}

        async def load(duration: float) -> int:
            """Turns from every connection, back to back, each on its own agents in turn; how many were answered."""
            nonlocal errors
            # Connections of its own: one left idle through a settle would meet the server's keep-alive timeout.
            conns = await open_conns(proc.port, concurrency)
            done, end = 0, time.perf_counter() + duration

            async def worker(w: int) -> None:
                nonlocal done, errors
                i = w
                while time.perf_counter() < end:
                    result = await conns[w].send(agent_request(ids[i % len(ids)], headers), "agent")
                    done, errors, i = done + result.ok, errors + (not result.ok), i + concurrency

            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            close_all(conns)
            return done

        await load(warmup)
        await settle(proc)  # the warm-up's journal group and recall writes land before the window, not in it
        before, (user0, kernel0), t0 = thread_cpu_ns(proc.pid), user_system_seconds(proc.pid), time.perf_counter()
        turns = await load(seconds)
        wall = time.perf_counter() - t0
        await settle(proc)  # what the turns left to the other threads: their journal group, recall writes
        elapsed = time.perf_counter() - t0
        used = cpu_ns_since(proc.pid, before)
        user1, kernel1 = user_system_seconds(proc.pid)
    finally:
        if proc is not None:
            proc.stop()
        if upstream is not None:
            upstream.stop()
        h.close()
    per_turn = max(1, turns)
    return {"size": size, "turns": turns, "errors": errors, "turns_per_s": turns / wall,
            # Idle work (a wake-up a second) is spread over the threads: it is taken off the total only.
            "cpu_ms_per_turn": (sum(used.values()) - idle * elapsed) / 1e6 / per_turn, "idle_ms_per_s": idle / 1e6,
            "seconds_measured": elapsed,
            "user_ms_per_turn": (user1 - user0) * 1e3 / per_turn, "kernel_ms_per_turn": (kernel1 - kernel0) * 1e3 / per_turn,
            "thread_ms_per_turn": {name: ns / 1e6 / per_turn for name, ns in sorted(used.items(), key=lambda x: -x[1])}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.steady", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=50, help="in-context messages per agent (default 50)")
    parser.add_argument("--agents", type=int, default=32, help="agents (default 32)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections sending turns (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of the same load first (default 3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds measured (default 20)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memproxy-steady-") as work:
        r = asyncio.run(measure(Path(work), args.size, args.agents, args.concurrency, args.warmup, args.seconds))
    print(f"{r['size']} in context: {r['turns']} turns ({r['turns_per_s']:.0f}/s, {r['errors']} errors), "
          f"{r['cpu_ms_per_turn']:.3f} CPU-ms per turn (user {r['user_ms_per_turn']:.3f}, kernel "
          f"{r['kernel_ms_per_turn']:.3f}, idle {r['idle_ms_per_s']:.2f} ms/s over {r['seconds_measured']:.1f} s "
          f"taken off)")
    for name, ms in list(r["thread_ms_per_turn"].items())[:8]:
        print(f"  {name:<16} {ms:.3f}")


if __name__ == "__main__":
    main()
