"""What several suites share: the three paths' requests, agent warm-up, and interleaved paired rounds."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.harness import Harness
from bench.loadgen import Conn, Result, Template, chat_body, close_all, open_conns
from bench.procs import Proc, cpu_ns_since, thread_cpu_ns
from bench.stats import paired_diffs, paired_gap_diffs, summary
from memory.duckdb_connection import APPLY_DELAY_S

CHAT = "/v1/chat/completions"
PASSTHROUGH_MODEL = "sim-small"
USER_TEXT = "Hi Sam, quick question: what did I tell you about my trip?"
PATHS = ("direct", "passthrough", "agent")
# After measured turns, memproxy's batched work (the journal's group reaching the tables, recall rows every
# 0.5 s) still runs: a measurement waits this long, then for quiet, so the turns are billed for it.
SETTLE_S = APPLY_DELAY_S + 0.5
# Each round sends the paths in a rotated order so none always goes first (warm caches, CPU frequency).
ROTATIONS = [PATHS[i:] + PATHS[:i] for i in range(len(PATHS))]


def direct_request(headers: dict[str, str]) -> Template:
    return Template(CHAT, chat_body(PASSTHROUGH_MODEL, USER_TEXT), headers)


def agent_request(agent_id: str, headers: dict[str, str]) -> Template:
    return Template(CHAT, chat_body(agent_id, USER_TEXT), headers)


async def wait_quiet(proc: Proc, limit_s: float = 90.0, window_s: float = 0.25, share: float = 0.02) -> float:
    """Wait until `proc` uses under `share` of a core over `window_s` (its background work after start or after
    a burst is over, so none of it is billed to what is measured next); returns seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        before = thread_cpu_ns(proc.pid)
        await asyncio.sleep(window_s)
        if sum(cpu_ns_since(proc.pid, before).values()) <= share * window_s * 1e9:
            break
    return time.monotonic() - t0


async def idle_rate(proc: Proc, seconds: float = 2.0, slices: int = 8) -> float:
    """`proc`'s CPU in ns per second while nothing is sent to it (timers, background upkeep): the median over
    `slices` equal slices of `seconds`, so that one burst of work left from earlier turns (a maintenance pass,
    a batched write), which belongs to those turns, does not pass for the idle rate."""
    rates = []
    for _ in range(slices):
        before, t0 = thread_cpu_ns(proc.pid), time.perf_counter()
        await asyncio.sleep(seconds / slices)
        rates.append(sum(cpu_ns_since(proc.pid, before).values()) / (time.perf_counter() - t0))
    return statistics.median(rates)


async def settle(proc: Proc, seconds: float = SETTLE_S) -> None:
    """Let the batched work measured turns leave behind happen (`SETTLE_S`), then wait for quiet."""
    await asyncio.sleep(seconds)
    await wait_quiet(proc)


async def warm_agents(h: Harness, agent_ids: list[str], concurrency: int = 16, port: int | None = None) -> int:
    """One zero-delay turn per agent (loads it, compiles its prompt); returns the error count.

    `port`: the memproxy to send them to, when not the harness's own.
    """
    if port is None:
        assert h.memproxy is not None
        port = h.memproxy.port
    headers = h.profile("zero")
    conns = await open_conns(port, min(concurrency, len(agent_ids)) or 1)
    queue = list(agent_ids)
    errors = 0

    async def worker(conn: Conn) -> None:
        nonlocal errors
        while queue:
            result = await conn.send(agent_request(queue.pop(), headers), "warmup")
            errors += not result.ok

    await asyncio.gather(*(worker(c) for c in conns))
    close_all(conns)
    return errors


async def paired_rounds(h: Harness, paths: tuple[str, ...], agents_by_worker: list[list[str]], rounds: int,
                        turns_per_agent: int, headers: dict[str, str]) -> dict[str, list[Result]]:
    """`len(agents_by_worker)` workers each send `rounds` rounds of one request per path, in rotated order.

    A worker moves to its next agent every `turns_per_agent` rounds so in-context history stays near its
    seeded size. Results are tagged (worker, round), the key that pairs requests across paths.
    """
    assert h.sim is not None and h.memproxy is not None
    workers = len(agents_by_worker)
    sim_conns = await open_conns(h.sim.port, workers)
    mp_conns = await open_conns(h.memproxy.port, workers)
    direct = direct_request(headers)
    warm_direct = direct_request(h.profile("zero"))
    await asyncio.gather(*(c.send(warm_direct, "warmup") for c in sim_conns + mp_conns))
    out: dict[str, list[Result]] = {p: [] for p in paths}
    rotations = [tuple(p for p in rotation if p in paths) for rotation in ROTATIONS]

    async def worker(w: int) -> None:
        agents = agents_by_worker[w]
        requests = {a: agent_request(a, headers) for a in agents}
        for r in range(rounds):
            for path in rotations[(w + r) % len(rotations)]:
                if path == "direct":
                    result = await sim_conns[w].send(direct, path)
                elif path == "passthrough":
                    result = await mp_conns[w].send(direct, path)
                else:
                    agent = agents[min(r // turns_per_agent, len(agents) - 1)]
                    result = await mp_conns[w].send(requests[agent], path)
                result.tag = (w, r)
                out[path].append(result)

    await asyncio.gather(*(worker(w) for w in range(workers)))
    close_all(sim_conns, mp_conns)
    return out


def path_figures(results: list[Result]) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    return {
        "requests": len(results),
        "errors": len(results) - len(ok),
        "ttft_ms": summary(r.ttft_ms for r in ok if r.ttft_ms is not None),
        "e2e_ms": summary(r.e2e_ms for r in ok),
        "gap_ms": summary(g for r in ok for g in r.gaps_ms),
        "client_us_per_request": summary(r.client_us for r in ok),
        "content_events": summary(r.content_events for r in ok),  # same on every path, or a path is not honest
        # What memproxy says it spent before calling the upstream (Server-Timing), beside the measured added TTFT.
        "server_timing_ms": summary(r.server_ms for r in ok if r.server_ms is not None),
    }


def added_figures(results: dict[str, list[Result]], path: str, base: str = "direct") -> dict[str, Any]:
    """Paired differences `path - base`: TTFT, end-to-end, and inter-chunk gaps position by position."""
    def by_tag(name: str, attr: str) -> dict[Any, Any]:
        return {r.tag: getattr(r, attr) for r in results[name] if r.ok}

    return {
        "ttft_ms": summary(paired_diffs(by_tag(path, "ttft_ms"), by_tag(base, "ttft_ms"))),
        "e2e_ms": summary(paired_diffs(by_tag(path, "e2e_ms"), by_tag(base, "e2e_ms"))),
        "gap_ms": summary(paired_gap_diffs(by_tag(path, "gaps_ms"), by_tag(base, "gaps_ms"))),
    }


def split_agents(agent_ids: list[str], workers: int, per_worker: int) -> list[list[str]]:
    return [agent_ids[w * per_worker:(w + 1) * per_worker] for w in range(workers)]
