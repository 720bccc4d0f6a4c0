"""Turn cost: memproxy's CPU per agent turn as the in-context history grows, and per passthrough request.

For each in-context size (50, 500, 5,000 messages; a context window large enough that nothing is
compacted), agents are cloned with 5,000 stored messages each, the last `size` of them in context, and
loaded with one warm-up turn each: the store holds the same rows at every size, so only the in-context
history differs. Every size has its own memproxy, all running side by side.

A size is measured in `WINDOWS` windows, alternated with the other sizes' in a rotated order: this
machine's speed drifts by tens of percent over seconds, and alternation puts every size under the same
drift. Each window has `AGENTS` agents of its own (so the context stays near its size: it grows by two
messages a turn): `TURNS_PER_AGENT // 4` turns each sent one at a time, then `TURNS_PER_AGENT` each from
`CONCURRENCY` connections. A window's CPU is memproxy's, all threads (event loop, journal, store commit,
recall indexing), from /proc in ns, over the turns and until memproxy is idle again after them (its idle
rate, measured before, is taken off): what a turn costs the machine, whatever the wall clock says. Figures
are totals over the windows, and the median of the windows' own ratios to the smallest size.

The largest size's turns come several times slower (the simulator parses a ~600 KB body each), and a turn
costs more when fewer turns share each event-loop wake-up, journal sync and batched write. So the smallest
size also runs, on a memproxy of its own, at the largest one's turn rate (the simulator holds each answer
for the difference in e2e p50, one at a time and concurrently, in the first window): that pair compares
history alone, the plain one history and turn rate together. The smallest size's memproxy then relays passthrough requests.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench import seed
from bench.harness import Harness
from bench.loadgen import Conn, close_all, open_conns
from bench.procs import Proc, cpu_ns, start_memproxy
from bench.stats import summary
from bench.suite import CpuMeter, SuiteResult, Table, bottleneck_note
from bench.suites.common import (SETTLE_S, agent_request, direct_request, idle_rate, settle, wait_quiet,
                                 warm_agents)

SIZES = (50, 500, 5_000)
SMOKE_SIZES = (20, 200)
AGENTS = 32  # per window
WINDOWS = 3
TURNS_PER_AGENT = 12
CONCURRENCY = 8
PASSTHROUGH_REQUESTS = 1_000
KINDS = ("sequential", "concurrent")
WINDOW = 4_000_000  # no compaction at any size here

@dataclass
class Arm:
    """One memproxy under test: its size, agents, connections, and what its windows measured."""

    label: str
    size: int
    proc: Proc
    ids: list[str]
    delay_ms: dict[str, float] = field(default_factory=dict)  # per kind: the simulator's wait before answering
    idle_ns_per_s: float = 0.0
    windows: int = 1  # window w drives ids[w::windows]
    conns: list[Conn] = field(default_factory=list)
    # per kind ("sequential", "concurrent"): each window's (CPU ns, turns, wall s)
    measured: dict[str, list[tuple[float, int, float]]] = field(default_factory=dict)
    e2e: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # per kind
    warmup_errors: int = 0
    loads: list[dict[str, float]] = field(default_factory=list)  # CPU shares over concurrent windows' turns
    settle_s: float = SETTLE_S  # a smoke run, which measures nothing, waits less


async def _send(h: Harness, arm: Arm, conns: list[Conn], queues: list[list[str]], kind: str | None) -> None:
    """Each connection sends its queue's turns in order (the simulator waiting `arm.delay_ms[kind]` to answer)."""
    assert h.sim is not None
    headers = {**h.profile("zero"), "X-Sim-Ttft-Ms": f"{arm.delay_ms.get(kind or '', 0.0):.2f}"}
    e2e = arm.e2e.setdefault(kind or "warm-up", [])

    async def worker(conn: Conn, queue: list[str]) -> None:
        for agent in queue:
            result = await conn.send(agent_request(agent, headers), "agent")
            if kind is not None:
                arm.errors[kind] = arm.errors.get(kind, 0) + (not result.ok)
            if result.ok:
                e2e.append(result.e2e_ms)

    await asyncio.gather(*(worker(conn, queue) for conn, queue in zip(conns, queues)))


async def _reconnect(arm: Arm) -> None:
    """Fresh connections: memproxy closes kept-alive ones left idle while the other memproxies had their turns."""
    close_all(arm.conns)
    arm.conns = await open_conns(arm.proc.port, len(arm.conns))


async def _window(h: Harness, arm: Arm, window: int, kind: str, turns_per_agent: int) -> None:
    """One measured window of `kind` on `arm`, on that window's own agents."""
    assert h.sim is not None
    await _reconnect(arm)
    agents = arm.ids[window::arm.windows]
    conns = arm.conns[:1] if kind == "sequential" else arm.conns
    # Connection w takes agents w, w + n, ...; each sends a turn to each of its agents, `turns_per_agent` times.
    queues = [agents[w::len(conns)] * turns_per_agent for w in range(len(conns))]
    turns = sum(len(q) for q in queues)
    c0, t0 = cpu_ns(arm.proc.pid), time.perf_counter()
    meter = CpuMeter({"memproxy": arm.proc.pid, "simulator": h.sim.pid}).start()
    await _send(h, arm, conns, queues, kind)
    wall = time.perf_counter() - t0
    if kind == "concurrent":
        arm.loads.append(meter.stop())
    await settle(arm.proc, arm.settle_s)
    elapsed = time.perf_counter() - t0
    cpu = max(0.0, cpu_ns(arm.proc.pid) - c0 - arm.idle_ns_per_s * elapsed)
    arm.measured.setdefault(kind, []).append((cpu, turns, wall))


def _ms_per_turn(windows: list[tuple[float, int, float]]) -> float:
    return sum(cpu for cpu, _, _ in windows) / 1e6 / max(1, sum(turns for _, turns, _ in windows))


def _window_ratio_median(windows: list[tuple[float, int, float]], base: list[tuple[float, int, float]]) -> float:
    """The median over windows of CPU per turn here against CPU per turn of `base` in the same window."""
    return statistics.median((a[0] / a[1]) / (b[0] / b[1]) for a, b in zip(windows, base))


def _figures(arm: Arm, kind: str, base: Arm | None) -> dict[str, Any]:
    windows = arm.measured[kind]
    turns = sum(t for _, t, _ in windows)
    out: dict[str, Any] = {
        "turns": turns,
        "errors": arm.errors.get(kind, 0),
        "cpu_ms_per_turn": _ms_per_turn(windows),
        "window_cpu_ms_per_turn": [cpu / 1e6 / t for cpu, t, _ in windows],
        "turns_per_s": turns / sum(w for _, _, w in windows),
        "e2e_ms": summary(arm.e2e.get(kind, [])),
    }
    if base is not None:
        out["window_ratio_median"] = _window_ratio_median(windows, base.measured[kind])
    if kind == "concurrent" and arm.loads:
        out["cpu"] = {key: statistics.mean(load[key] for load in arm.loads) for key in arm.loads[0]}
    return out


async def _passthrough(h: Harness, arm: Arm, requests: int) -> dict[str, Any]:
    assert h.sim is not None
    request = direct_request(h.profile("zero"))
    await _reconnect(arm)
    per_conn = max(1, requests // len(arm.conns))
    errors = 0

    async def worker(conn: Conn) -> None:
        nonlocal errors
        for _ in range(per_conn):
            errors += not (await conn.send(request, "passthrough")).ok

    await asyncio.gather(*(worker(c) for c in arm.conns))  # warm-up: connections, upstream pool
    meter = CpuMeter({"memproxy": arm.proc.pid, "simulator": h.sim.pid}).start()
    c0, t0 = cpu_ns(arm.proc.pid), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in arm.conns))
    cpu = cpu_ns(arm.proc.pid) - c0 - arm.idle_ns_per_s * (time.perf_counter() - t0)
    sent = per_conn * len(arm.conns)
    return {"requests": sent, "errors": errors, "cpu_ms_per_request": cpu / 1e6 / sent, "cpu": meter.stop()}


async def _start_arm(h: Harness, label: str, size: int, max_size: int, agents: int, windows: int) -> Arm:
    data = h.new_data_dir(f"turncost-{label.replace(' ', '-')}")
    ids = seed.clone_agents(data, h.template_id, agents * windows, max_size, tag=f"ctx{size}", in_context=size,
                            context_window=WINDOW)
    # Indexed for recall as a server would have indexed them turn by turn: otherwise the start-up repair
    # indexes them all, and the maintenance passes that follow land in the measured turns.
    await seed.index_recall(data)
    proc = start_memproxy(h.log_dir, data, h.upstream)
    h.log(f"turncost {label}: memproxy pid {proc.pid} on :{proc.port}")
    arm = Arm(label, size, proc, ids, windows=windows, settle_s=0.1 if h.scale.smoke else SETTLE_S)
    arm.warmup_errors = await warm_agents(h, ids, port=proc.port)
    arm.conns = await open_conns(proc.port, min(CONCURRENCY, agents))
    return arm


async def run(h: Harness) -> SuiteResult:
    sizes = SMOKE_SIZES if h.scale.smoke else SIZES
    agents = 4 if h.scale.smoke else AGENTS
    windows = 2 if h.scale.smoke else WINDOWS
    turns_per_agent = 2 if h.scale.smoke else TURNS_PER_AGENT
    smallest, largest = sizes[0], sizes[-1]
    arms: list[Arm] = []
    try:
        for size in sizes:
            arms.append(await _start_arm(h, str(size), size, largest, agents, windows))
        rated = await _start_arm(h, f"{smallest} at the {largest} rate", smallest, largest, agents, windows)
        arms.append(rated)
        # One unmeasured turn on the first window's agents: connections and upstream pools warm.
        for arm in arms:
            await _reconnect(arm)
            first = arm.ids[::windows]
            await _send(h, arm, arm.conns, [first[w::len(arm.conns)] for w in range(len(arm.conns))], None)
        for arm in arms:
            await wait_quiet(arm.proc)
            arm.idle_ns_per_s = await idle_rate(arm.proc)
        h.log(f"turncost: {len(arms)} memproxies warm and idle; {windows} windows each")
        for w in range(windows):
            for arm in arms[w % len(arms):] + arms[:w % len(arms)]:
                if arm is rated and not arm.measured:  # it comes last in the first window
                    for kind in KINDS:
                        rated.delay_ms[kind] = max(0.0, statistics.median(arms[len(sizes) - 1].e2e[kind])
                                                   - statistics.median(arms[0].e2e[kind]))
                    h.log(f"turncost: the {smallest} rate memproxy's upstream waits "
                          + ", ".join(f"{ms:.1f} ms {kind}" for kind, ms in rated.delay_ms.items()))
                await _window(h, arm, w, "sequential", max(1, turns_per_agent // 4))
                await _window(h, arm, w, "concurrent", turns_per_agent)
        requests = 40 if h.scale.smoke else PASSTHROUGH_REQUESTS
        passthrough = await _passthrough(h, arms[0], requests)
    finally:
        for arm in arms:
            close_all(arm.conns)
            arm.proc.stop()

    base = arms[0]
    points: dict[str, Any] = {}
    for arm in arms[:len(sizes)]:
        point = _figures(arm, "concurrent", base)
        point["sequential"] = _figures(arm, "sequential", base)
        point["warmup_errors"] = arm.warmup_errors
        points[f"m{arm.size}"] = point
    matched = _figures(rated, "concurrent", None)
    matched["ttft_ms"] = rated.delay_ms["concurrent"]
    matched["sequential"] = _figures(rated, "sequential", None)
    matched["sequential"]["ttft_ms"] = rated.delay_ms["sequential"]
    largest_vs_matched = {kind: _window_ratio_median(arms[len(sizes) - 1].measured[kind], rated.measured[kind])
                          for kind in KINDS}
    points[f"m{smallest}"]["rate_matched"] = matched
    points[f"m{largest}"]["vs_rate_matched_window_ratio_median"] = largest_vs_matched
    for arm in arms:
        h.log(f"turncost {arm.label}: {_ms_per_turn(arm.measured['sequential']):.3f} CPU-ms per turn one at a time, "
              f"{_ms_per_turn(arm.measured['concurrent']):.3f} at concurrency {len(arm.conns)}")
    h.log(f"turncost passthrough: {passthrough['cpu_ms_per_request']:.3f} CPU-ms per request")

    result = SuiteResult()
    result.figures = {"agent": points, "passthrough": passthrough}
    rows = []
    for label, pick in (("1", lambda p: p["sequential"]), (str(CONCURRENCY), lambda p: p)):
        base_ms = pick(points[f"m{smallest}"])["cpu_ms_per_turn"]
        for size in sizes:
            p = pick(points[f"m{size}"])
            rows.append([label, size, p["turns"], f"{p['cpu_ms_per_turn']:.3f}", f"{p['cpu_ms_per_turn'] / base_ms:.2f}x",
                         f"{p['window_ratio_median']:.2f}x", f"{p['turns_per_s']:.0f}", f"{p['e2e_ms']['p50']:.2f}",
                         p["errors"]])
    result.tables.append(Table(f"CPU per agent turn (memproxy, all threads; {windows} alternated windows)",
                               ["concurrency", "in context", "turns", "CPU ms/turn", f"vs {smallest}",
                                "median window ratio", "turns/s", "e2e p50 ms", "errors"], rows))
    largest_point = points[f"m{largest}"]
    rows = []
    for label, pick, kind in (("1", lambda p: p["sequential"], "sequential"),
                              (str(CONCURRENCY), lambda p: p, "concurrent")):
        m, big = pick(matched), pick(largest_point)
        rows.append([label, smallest, f"{rated.delay_ms[kind]:.1f}", m["turns"], f"{m['cpu_ms_per_turn']:.3f}", "1.00x",
                     "1.00x", f"{m['turns_per_s']:.0f}", f"{m['e2e_ms']['p50']:.2f}"])
        rows.append([label, largest, "0.0", big["turns"], f"{big['cpu_ms_per_turn']:.3f}",
                     f"{big['cpu_ms_per_turn'] / m['cpu_ms_per_turn']:.2f}x", f"{largest_vs_matched[kind]:.2f}x",
                     f"{big['turns_per_s']:.0f}", f"{big['e2e_ms']['p50']:.2f}"])
    result.tables.append(Table(
        f"CPU per agent turn at the same turn rate (the simulator holds each {smallest}-message answer to the "
        f"{largest} phase's e2e)",
        ["concurrency", "in context", "upstream delay ms", "turns", "CPU ms/turn", f"vs {smallest}",
         "median window ratio", "turns/s", "e2e p50 ms"], rows))
    result.tables.append(Table("CPU per passthrough request", ["requests", "CPU ms/request", "errors"],
                               [[passthrough["requests"], f"{passthrough['cpu_ms_per_request']:.3f}",
                                 passthrough["errors"]]]))
    for size in sizes:
        note = bottleneck_note(f"{size} in context", points[f"m{size}"]["cpu"])
        if note:
            result.notes.append(note)
    return result
