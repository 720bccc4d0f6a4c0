"""Turn cost: memproxy's CPU per agent turn as the in-context history grows, and per passthrough request.

For each in-context size (50, 500, 5,000 messages; a context window large enough that nothing is
compacted), `AGENTS` agents are cloned with 5,000 stored messages each, the last `size` of them in
context, and loaded with one warm-up turn each: the store holds the same rows at every size, so only
the in-context history differs. Then `CONCURRENCY` connections send zero-delay turns, each connection to its own agents in
turn, `TURNS_PER_AGENT` per agent (the context grows by two messages a turn, so it stays near its size).
CPU is memproxy's user + system time over the measured turns and until it is idle again after them, all
threads (event loop, journal, store commit, recall indexing), from /proc: what a turn costs the machine,
whatever the wall clock says. The same
server then relays passthrough requests, measured the same way.

The largest size's turns come several times slower (the simulator parses a ~600 KB body each), and a turn
costs more when fewer turns share each event-loop wake-up, journal sync and batched write. So the smallest
size is measured a second time at the largest one's turn rate (the simulator holds each answer for the
difference in e2e p50): that pair compares history alone, the plain one history and turn rate together.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench import seed
from bench.harness import Harness
from bench.loadgen import Conn, close_all, open_conns
from bench.procs import cpu_seconds
from bench.stats import summary
from bench.suite import CpuMeter, SuiteResult, Table, bottleneck_note
from bench.suites.common import agent_request, direct_request, warm_agents

SIZES = (50, 500, 5_000)
SMOKE_SIZES = (20, 200)
AGENTS = 32
TURNS_PER_AGENT = 12
CONCURRENCY = 8
PASSTHROUGH_REQUESTS = 1_000
WINDOW = 4_000_000  # no compaction at any size here


async def _quiet(h: Harness, limit_s: float = 90.0) -> float:
    """Wait until memproxy's background work after start (search-index upkeep) is over; returns seconds waited.

    Quiet means under 3% of a core over half a second: otherwise that work would be billed to the turns.
    """
    assert h.memproxy is not None
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        before = cpu_seconds(h.memproxy.pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(h.memproxy.pid) - before <= 0.015:
            break
    return time.monotonic() - t0


async def _turns(h: Harness, conns: list[Conn], agent_ids: list[str], turns_per_agent: int,
                 ttft_ms: float = 0.0) -> dict[str, Any]:
    """Send the turns (the simulator waiting `ttft_ms` before each answer); memproxy CPU per turn, client e2e."""
    assert h.memproxy is not None and h.sim is not None
    headers = {**h.profile("zero"), "X-Sim-Ttft-Ms": f"{ttft_ms:.2f}"}
    queues = [agent_ids[w::len(conns)] for w in range(len(conns))]
    e2e: list[float] = []
    errors = 0

    async def worker(w: int) -> None:
        nonlocal errors
        for _ in range(turns_per_agent):
            for agent in queues[w]:
                result = await conns[w].send(agent_request(agent, headers), "agent")
                errors += not result.ok
                if result.ok:
                    e2e.append(result.e2e_ms)

    meter = CpuMeter({"memproxy": h.memproxy.pid, "simulator": h.sim.pid}).start()
    cpu0 = cpu_seconds(h.memproxy.pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(len(conns))))
    wall = time.perf_counter() - t0
    # Work a turn leaves behind counts too: the journaled rows reaching the tables, recall indexing.
    await _quiet(h, 30.0)
    cpu = cpu_seconds(h.memproxy.pid) - cpu0
    turns = len(agent_ids) * turns_per_agent
    return {"turns": turns, "errors": errors, "cpu_ms_per_turn": 1000 * cpu / turns, "turns_per_s": turns / wall,
            "e2e_ms": summary(e2e), "cpu": meter.stop()}


async def _passthrough(h: Harness, conns: list[Conn], requests: int) -> dict[str, Any]:
    assert h.memproxy is not None and h.sim is not None
    request = direct_request(h.profile("zero"))
    per_conn = max(1, requests // len(conns))
    errors = 0

    async def worker(conn: Conn) -> None:
        nonlocal errors
        for _ in range(per_conn):
            errors += not (await conn.send(request, "passthrough")).ok

    await asyncio.gather(*(worker(c) for c in conns))  # warm-up: connections, upstream pool
    meter = CpuMeter({"memproxy": h.memproxy.pid, "simulator": h.sim.pid}).start()
    cpu0 = cpu_seconds(h.memproxy.pid)
    await asyncio.gather(*(worker(c) for c in conns))
    cpu = cpu_seconds(h.memproxy.pid) - cpu0
    sent = per_conn * len(conns)
    return {"requests": sent, "errors": errors, "cpu_ms_per_request": 1000 * cpu / sent, "cpu": meter.stop()}


async def run(h: Harness) -> SuiteResult:
    sizes = SMOKE_SIZES if h.scale.smoke else SIZES
    agents = 4 if h.scale.smoke else AGENTS
    turns_per_agent = 2 if h.scale.smoke else TURNS_PER_AGENT
    result = SuiteResult()
    points: dict[str, Any] = {}
    passthrough: dict[str, Any] = {}
    # Largest first, so the smallest size can also be measured at the largest one's turn rate (below).
    for size in reversed(sizes):
        data = h.new_data_dir(f"turncost{size}")
        ids = seed.clone_agents(data, h.template_id, agents, max(sizes), tag=f"ctx{size}", in_context=size,
                                context_window=WINDOW)
        # Indexed for recall as a server would have indexed them turn by turn: otherwise the start-up repair
        # indexes them all, and the maintenance passes that follow land in the measured turns.
        await seed.index_recall(data)
        mp = h.start_memproxy(data)
        errors = await warm_agents(h, ids)
        waited = await _quiet(h)
        h.log(f"turncost {size} in context: {agents} agents loaded and warm, memproxy idle after {waited:.1f}s; "
              "measuring")
        # One connection first: no two turns share a store commit, so CPU per turn does not depend on how
        # many turns the upstream's speed lets end together.
        single = await open_conns(mp.port, 1)
        sequential = await _turns(h, single, ids, max(1, turns_per_agent // 4))
        close_all(single)
        conns = await open_conns(mp.port, min(CONCURRENCY, agents))
        point = await _turns(h, conns, ids, turns_per_agent)
        point["warmup_errors"] = errors
        point["sequential"] = sequential
        points[f"m{size}"] = point
        h.log(f"turncost {size} in context: {sequential['cpu_ms_per_turn']:.3f} CPU-ms per turn one at a time, "
              f"{point['cpu_ms_per_turn']:.3f} at concurrency {len(conns)} ({point['turns_per_s']:.0f} turns/s, "
              f"e2e p50 {point['e2e_ms']['p50']:.2f} ms)")
        if size == sizes[0]:
            # The largest size's turns come slower (the simulator parses a bigger body), and a turn costs more
            # when fewer turns share each wake-up, journal sync and batch: the same turns again, with the
            # simulator holding each answer for the difference in e2e, separate what the history costs.
            largest = points[f"m{sizes[-1]}"]["e2e_ms"]["p50"]
            delay = max(0.0, largest - point["e2e_ms"]["p50"])
            point["rate_matched"] = await _turns(h, conns, ids, turns_per_agent, ttft_ms=delay)
            point["rate_matched"]["ttft_ms"] = delay
            h.log(f"turncost {size} in context at the {sizes[-1]} turn rate (+{delay:.1f} ms upstream): "
                  f"{point['rate_matched']['cpu_ms_per_turn']:.3f} CPU-ms per turn "
                  f"({point['rate_matched']['turns_per_s']:.0f} turns/s)")
            requests = 40 if h.scale.smoke else PASSTHROUGH_REQUESTS
            passthrough = await _passthrough(h, conns, requests)
            h.log(f"turncost passthrough: {passthrough['cpu_ms_per_request']:.3f} CPU-ms per request")
        close_all(conns)
        h.stop_memproxy()
    result.figures = {"agent": points, "passthrough": passthrough}
    rows = []
    for label, pick in (("1", lambda p: p["sequential"]), (str(CONCURRENCY), lambda p: p)):
        base = pick(points[f"m{sizes[0]}"])["cpu_ms_per_turn"]
        for size in sizes:
            p = pick(points[f"m{size}"])
            rows.append([label, size, p["turns"], f"{p['cpu_ms_per_turn']:.3f}", f"{p['cpu_ms_per_turn'] / base:.2f}x",
                         f"{p['turns_per_s']:.0f}", f"{p['e2e_ms']['p50']:.2f}", p["errors"]])
    result.tables.append(Table("CPU per agent turn (memproxy, all threads)",
                               ["concurrency", "in context", "turns", "CPU ms/turn", f"vs {sizes[0]}", "turns/s",
                                "e2e p50 ms", "errors"], rows))
    matched, largest = points[f"m{sizes[0]}"]["rate_matched"], points[f"m{sizes[-1]}"]
    result.tables.append(Table(
        f"CPU per agent turn at the same turn rate (concurrency {CONCURRENCY}; the simulator holds each answer "
        f"to the {sizes[-1]} phase's e2e)",
        ["in context", "upstream delay ms", "turns", "CPU ms/turn", f"vs {sizes[0]}", "turns/s", "e2e p50 ms"],
        [[sizes[0], f"{matched['ttft_ms']:.1f}", matched["turns"], f"{matched['cpu_ms_per_turn']:.3f}", "1.00x",
          f"{matched['turns_per_s']:.0f}", f"{matched['e2e_ms']['p50']:.2f}"],
         [sizes[-1], "0.0", largest["turns"], f"{largest['cpu_ms_per_turn']:.3f}",
          f"{largest['cpu_ms_per_turn'] / matched['cpu_ms_per_turn']:.2f}x", f"{largest['turns_per_s']:.0f}",
          f"{largest['e2e_ms']['p50']:.2f}"]]))
    result.tables.append(Table("CPU per passthrough request", ["requests", "CPU ms/request", "errors"],
                               [[passthrough["requests"], f"{passthrough['cpu_ms_per_request']:.3f}",
                                 passthrough["errors"]]]))
    for size in sizes:
        note = bottleneck_note(f"{size} in context", points[f"m{size}"]["cpu"])
        if note:
            result.notes.append(note)
    return result
