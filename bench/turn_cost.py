"""`python -m bench.turn_cost`: the CPU of one agent turn through the whole app, in process.

The agent-side twin of `bench.relay_cost`: the real app (`build_app`, its lifespan, DuckDB, the turn journal
and the recall index in a temp dir) serves streamed agent turns called as ASGI directly on uvloop, against an
upstream in the same process that answers every request at once with a fixed streamed text answer (role,
12 content chunks, finish, usage, `[DONE]`, as the simulator sends them). `--agents` agents are made through
the API and given `--history` turns each first (two messages a turn, so ~2x that many in context); a round
then sends `--turns` turns from `--concurrency` callers, spread over the agents (each agent's context grows
by two messages per turn it takes). The server, the kernel's loopback to the client and sleeping between
turns are left out, so a before/after on this noisy machine compares the turn's own work. Run it on two
checkouts with `PYTHONPATH` pointing at each (from outside both) to compare them. Prints the best of
`--rounds` rounds: microseconds of process CPU per turn, all threads (the journal, the store's commits, the
recall index), the upstream's small share included, the same in both.

The event loop thread's own CPU (`time.thread_time`) is printed beside, steadier: the other threads' batched work
lands in some rounds and not others.

`--profile FILE` also writes a cProfile of the event loop thread over the last round (for `pstats`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import time
from typing import Any

import httpx
import orjson
import uvloop

from bench.relay_cost import CLIENT_HEADERS, REPLY_PIECES, call, running_app, streamed_answer
from bench.seed import TEMPLATE_AGENT
from proxy.sim.sse import DONE, ChunkEncoder


def agent_answer() -> bytes:
    """The upstream's answer to every agent turn: a short streamed text reply, as the simulator sends it."""
    enc = ChunkEncoder("chatcmpl-bench", 1_700_000_000, "sim-model", include_usage=True)
    return streamed_answer([enc.role(), *(enc.content(p) for p in REPLY_PIECES), enc.finish("stop"),
                            enc.usage(900, 24), DONE])


def turn_body(agent_id: str, n: int) -> bytes:
    return orjson.dumps({"model": agent_id, "stream": True, "stream_options": {"include_usage": True},
                         "messages": [{"role": "user", "content": f"Quick question {n}: what did I say about my trip?"}]})


async def measure(agents: int, history: int, turns: int, rounds: int, concurrency: int,
                  profile: str | None = None) -> dict[str, Any]:
    sent = 0
    sizes: list[int] = []
    async with running_app(agent_answer(), prefix="memproxy-turn-cost-") as (app, counter):

        async def batch(n: int) -> None:
            """`n` turns from `concurrency` callers, round-robin over the agents."""
            nonlocal sent
            start, sent = sent, sent + n
            queue = iter(range(start, start + n))

            async def caller() -> None:
                for i in queue:
                    sizes.append(await call(app, turn_body(ids[i % len(ids)], i), CLIENT_HEADERS))

            await asyncio.gather(*(caller() for _ in range(concurrency)))

        ids = await make_agents(app, agents)
        await batch(agents * history)
        in_context_before = await _in_context(app, ids)
        per_round, loop_round = [], []
        profiler = cProfile.Profile() if profile else None
        for r in range(rounds):
            last = r == rounds - 1
            if profiler is not None and last:
                profiler.enable()
            t0, l0 = time.process_time(), time.thread_time()
            await batch(turns)
            per_round.append((time.process_time() - t0) / turns * 1e6)
            loop_round.append((time.thread_time() - l0) / turns * 1e6)
            if profiler is not None and last:
                profiler.disable()
        in_context_after = await _in_context(app, ids)
        if profiler is not None and profile:
            profiler.dump_stats(profile)
    return {"cpu_us_per_turn": min(per_round), "rounds_us": per_round, "loop_us_per_turn": min(loop_round),
            "loop_rounds_us": loop_round, "upstream_requests": counter[0],
            "turns": sent, "answer_bytes": sorted(set(sizes)), "in_context": [in_context_before, in_context_after]}


async def make_agents(app: Any, n: int) -> list[str]:
    """`n` agents like the bench template, made through the app's API; their ids."""
    ids = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://memproxy") as http:
        for _ in range(n):
            made = await http.post("/v1/agents/", json=TEMPLATE_AGENT)
            made.raise_for_status()
            ids.append(made.json()["id"])
    return ids


async def _in_context(app: Any, ids: list[str]) -> tuple[int, int]:
    """The fewest and most in-context messages over the agents."""
    memory = app.state.rt.memory
    counts = []
    for agent_id in ids:
        live = await memory.get(agent_id)
        counts.append(len(live.messages))
    return min(counts), max(counts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.turn_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=100, help="agents (default 100)")
    parser.add_argument("--history", type=int, default=24, help="turns per agent before measuring (default 24)")
    parser.add_argument("--turns", type=int, default=1000, help="turns per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best is reported (default 5)")
    parser.add_argument("--concurrency", type=int, default=8, help="turns in flight (default 8)")
    parser.add_argument("--profile", default=None, help="write a cProfile of the last round here")
    args = parser.parse_args(argv)
    figures = uvloop.run(measure(args.agents, args.history, args.turns, args.rounds, args.concurrency, args.profile))
    lo, hi = figures["in_context"][0][0], figures["in_context"][1][1]
    print(f"agent turn through the whole app, in process: {figures['cpu_us_per_turn']:.1f} us of CPU per turn "
          f"(best of {args.rounds} rounds of {args.turns} at concurrency {args.concurrency}, {lo}-{hi} messages "
          f"in context; rounds {', '.join(f'{r:.1f}' for r in figures['rounds_us'])}); the event loop's thread "
          f"{figures['loop_us_per_turn']:.1f} us (rounds {', '.join(f'{r:.1f}' for r in figures['loop_rounds_us'])})")


if __name__ == "__main__":
    main()
