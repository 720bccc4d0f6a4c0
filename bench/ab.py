"""`python -m bench.ab A B`: two checkouts' memproxies side by side, requests alternated: both see the same machine.

This machine's speed moves by tens of percent between minutes, so runs of two checkouts one after the other (even
alternated) mostly compare minutes. Here one upstream (`bench.fixed_upstream`, or the simulator with `--upstream
sim`) serves two memproxies at once, one run from checkout A and one from B (each its own data dir, `--agents`
agents with `--size` messages in context); one connection to each sends a request to A, then to B, then B, then A,
and so on, one at a time: passthrough requests, then agent turns (with `--upstream sim`, `--tokens N --token-ms D`
make each reply N tokens, D ms apart; `--gap-ms G` pauses G ms after each request, as a call does between its
turns, so what an idle server does between requests counts). Reported per side: the client's TTFT (median, p90,
p99), the median of memproxy's own time before the upstream call (its `Server-Timing`), and memproxy's CPU per
request: all threads, from /proc/<pid>/task/*/schedstat, with the batched work that lands in the `SETTLE_S` after
the last request.
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
from bench.loadgen import open_conns
from bench.procs import cpu_ns_since, start_fixed_upstream, start_memproxy, thread_cpu_ns
from bench.suites.common import SETTLE_S, agent_request, direct_request, warm_agents
from bench.suites.turncost import WINDOW

KINDS = ("passthrough", "agent")


async def measure(work: Path, a: str, b: str, rounds: int, *, agents: int = 16, size: int = 50,
                  upstream: str = "fixed", warmup: int = 50, tokens: int | None = None,
                  token_ms: float = 0.0, gap_ms: float = 0.0) -> dict[str, dict[str, dict[str, float]]]:
    """{kind: {"A"|"B": figures}} for `rounds` requests of each kind to each side.

    With the simulator, `tokens` sets the reply's length and `token_ms` the time between its tokens (each then
    arrives in a read of its own: what a streamed token costs). `gap_ms`: a pause after each request, so each
    side idles between its requests as a server does between a call's turns (its idle wake-ups count then)."""
    h = Harness(work, FULL)
    h.start()
    fixed = procs = conns = None
    try:
        if upstream == "fixed":
            fixed = start_fixed_upstream(h.log_dir)
        base = fixed.base + "/v1" if fixed is not None else h.upstream
        ids: dict[str, list[str]] = {}
        procs = {}
        for side, code in (("A", a), ("B", b)):
            data = h.new_data_dir("ab-" + side)
            ids[side] = seed.clone_agents(data, h.template_id, agents, max(size, 100), tag="ab", in_context=size,
                                          context_window=WINDOW)
            await seed.index_recall(data)
            procs[side] = start_memproxy(h.log_dir, data, base, code=str(Path(code).resolve()))
            await warm_agents(h, ids[side], port=procs[side].port)
        headers = {**h.profile("zero"), "X-Sim-Ttft-Ms": "0"}
        if tokens is not None:
            headers.update({"X-Sim-Reply-Tokens": str(tokens), "X-Sim-Token-Delay-Ms": str(token_ms)})
        conns = {side: (await open_conns(proc.port, 1))[0] for side, proc in procs.items()}

        def request(kind: str, side: str, i: int) -> Any:
            if kind == "passthrough":
                return direct_request(headers)
            return agent_request(ids[side][i % agents], headers)

        out: dict[str, dict[str, dict[str, float]]] = {}
        for kind in KINDS:
            for i in range(warmup):  # alternated too: a connection idle past uvicorn's keep-alive would be closed
                for side in procs:
                    await conns[side].send(request(kind, side, i), kind)
            ttfts: dict[str, list[float]] = {side: [] for side in procs}
            own: dict[str, list[float]] = {side: [] for side in procs}  # Server-Timing: before the upstream call
            errors = {side: 0 for side in procs}
            cpu0 = {side: thread_cpu_ns(proc.pid) for side, proc in procs.items()}
            started = time.perf_counter()
            for i in range(rounds):
                for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                    result = await conns[side].send(request(kind, side, i), kind)
                    if result.ok and result.ttft_ms is not None:
                        ttfts[side].append(result.ttft_ms)
                        if result.server_ms is not None:
                            own[side].append(result.server_ms)
                    else:
                        errors[side] += 1
                        h.log(f"{kind} request to {side} failed: {result.error or 'no content'} "
                              f"(status {result.status})")
                    if gap_ms:
                        await asyncio.sleep(gap_ms / 1000)
            seconds = time.perf_counter() - started
            await asyncio.sleep(SETTLE_S)
            out[kind] = {}
            for side, proc in procs.items():
                values = ttfts[side] or [0.0]
                cuts = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
                out[kind][side] = {
                    "ttft_p50_ms": statistics.median(values), "ttft_p90_ms": cuts[89], "ttft_p99_ms": cuts[98],
                    "server_timing_p50_ms": statistics.median(own[side] or [0.0]),
                    "cpu_ms_per_request": sum(cpu_ns_since(proc.pid, cpu0[side]).values()) / rounds / 1e6,
                    "errors": errors[side], "seconds": seconds}
        return out
    finally:
        for conn in (conns or {}).values():
            conn.close()
        for proc in (procs or {}).values():
            proc.stop()
        if fixed is not None:
            fixed.stop()
        h.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("a", help="checkout A (a directory holding proxy/, memory/, tools/)")
    parser.add_argument("b", help="checkout B")
    parser.add_argument("--rounds", type=int, default=2000, help="requests of each kind to each side (default 2000)")
    parser.add_argument("--agents", type=int, default=16, help="agents per side (default 16)")
    parser.add_argument("--size", type=int, default=50, help="in-context messages per agent (default 50)")
    parser.add_argument("--upstream", choices=("fixed", "sim"), default="fixed",
                        help="bench.fixed_upstream (default) or the simulator at zero delay")
    parser.add_argument("--tokens", type=int, default=None, help="with --upstream sim: tokens per reply")
    parser.add_argument("--token-ms", type=float, default=0.0, help="with --upstream sim: ms between tokens")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="pause after each request, idling both sides as between a call's turns (default 0)")
    args = parser.parse_args(argv)
    if args.tokens is not None and args.upstream != "sim":
        parser.error("--tokens needs --upstream sim (the fixed upstream always sends the same answer)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="memproxy-ab-") as work:
        r = asyncio.run(measure(Path(work), args.a, args.b, args.rounds, agents=args.agents, size=args.size,
                                upstream=args.upstream, tokens=args.tokens, token_ms=args.token_ms,
                                gap_ms=args.gap_ms))
    for kind, sides in r.items():
        for side, f in sides.items():
            print(f"{kind:<11} {side}: TTFT p50 {f['ttft_p50_ms']:.3f} p90 {f['ttft_p90_ms']:.3f} "
                  f"p99 {f['ttft_p99_ms']:.3f} ms (own {f['server_timing_p50_ms']:.3f}); "
                  f"CPU {f['cpu_ms_per_request']:.3f} ms per request; {f['errors']:.0f} errors")
    print(f"({args.rounds} of each kind per side, alternated; {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
