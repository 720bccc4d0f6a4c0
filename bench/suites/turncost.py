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

The memproxies' upstream is `bench.fixed_upstream` (`--turncost-upstream sim`: the simulator): it answers
every request with one fixed stream without reading the body, so what it costs does not grow with the
history (the simulator parses each ~600 KB body at 5,000 messages, 4-5 ms of CPU on the same cores). Each
size's CPU is also reported as user and kernel time (clock ticks from /proc/<pid>/stat).

The largest size's turns still come slower (its ~600 KB body goes through both ends' sockets), and on
this kind of machine the same work costs more after the process has idled (cold caches: the suite measures
that too, as `idle_penalty`), so the plain comparison mixes history with turn rate. Two more memproxies, the
smallest and the largest size, are measured at an upstream's pace: the upstream takes `UPSTREAM_MS` to
answer, and turns are sent on a fixed schedule (one at a time, then from `CONCURRENCY` connections), the
same for both, so both serve the same turns per second and idle alike between them: that pair compares
history alone. The smallest size's memproxy then relays passthrough requests.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench import seed
from bench.harness import Harness
from bench.loadgen import Conn, close_all, open_conns
from bench.procs import (Proc, cpu_ns_since, start_fixed_upstream, start_memproxy, thread_cpu_ns,
                         user_system_seconds)
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
UPSTREAM_MS = 50.0  # the paced pair's upstream answer time: a fast hosted model's
SMOKE_UPSTREAM_MS = 2.0
# The paced schedule, set from the largest size's plain turns in the first window: a connection's turns
# start this many times its one-at-a-time turn (upstream wait included) apart, and all connections together
# offer at most this share of the turns per second it managed at concurrency.
PACE_SLACK = 1.5
PACE_SHARE = 0.5
WINDOW = 4_000_000  # no compaction at any size here

@dataclass
class Arm:
    """One memproxy under test: its size, agents, connections, and what its windows measured."""

    label: str
    size: int
    proc: Proc
    ids: list[str]
    upstream_pid: int = 0  # the process answering its chat requests (for the bottleneck notes)
    delay_ms: float = 0.0  # the upstream's wait before answering
    interval_s: dict[str, float] = field(default_factory=dict)  # per kind: a connection's turns start this far apart
    idle_ns_per_s: float = 0.0
    windows: int = 1  # window w drives ids[w::windows]
    conns: list[Conn] = field(default_factory=list)
    # per kind ("sequential", "concurrent"): each window's (CPU ns, turns, wall s)
    measured: dict[str, list[tuple[float, int, float]]] = field(default_factory=dict)
    e2e: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # per kind
    late: dict[str, int] = field(default_factory=dict)  # per kind: turns that started after their slot
    threads: dict[str, dict[str, int]] = field(default_factory=dict)  # per kind: CPU ns per thread name, all windows
    # per kind: user and kernel CPU seconds over all windows (clock ticks; idle work not taken off)
    split: dict[str, list[float]] = field(default_factory=dict)
    warmup_errors: int = 0
    loads: list[dict[str, float]] = field(default_factory=list)  # CPU shares over concurrent windows' turns
    settle_s: float = SETTLE_S  # a smoke run, which measures nothing, waits less


async def _send(h: Harness, arm: Arm, conns: list[Conn], queues: list[list[str]], kind: str | None) -> None:
    """Each connection sends its queue's turns in order: back to back, or on `arm.interval_s[kind]`'s schedule
    (connection w's turn j starts at w/n + j intervals, or as soon as its previous turn ends if that is later)."""
    assert h.sim is not None
    headers = {**h.profile("zero"), "X-Sim-Ttft-Ms": f"{arm.delay_ms:.2f}"}
    e2e = arm.e2e.setdefault(kind or "warm-up", [])
    interval = arm.interval_s.get(kind or "", 0.0)
    start = time.perf_counter()

    async def worker(w: int, conn: Conn, queue: list[str]) -> None:
        for j, agent in enumerate(queue):
            if interval:
                wait = start + (w / len(conns) + j) * interval - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif kind is not None and j:
                    arm.late[kind] = arm.late.get(kind, 0) + 1
            result = await conn.send(agent_request(agent, headers), "agent")
            if kind is not None:
                arm.errors[kind] = arm.errors.get(kind, 0) + (not result.ok)
            if result.ok:
                e2e.append(result.e2e_ms)

    await asyncio.gather(*(worker(w, conn, queue) for w, (conn, queue) in enumerate(zip(conns, queues))))


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
    before, t0 = thread_cpu_ns(arm.proc.pid), time.perf_counter()
    user0, kernel0 = user_system_seconds(arm.proc.pid)
    meter = CpuMeter({"memproxy": arm.proc.pid, "simulator": arm.upstream_pid}).start()
    await _send(h, arm, conns, queues, kind)
    wall = time.perf_counter() - t0
    if kind == "concurrent":
        arm.loads.append(meter.stop())
    await settle(arm.proc, arm.settle_s)
    elapsed = time.perf_counter() - t0
    used = cpu_ns_since(arm.proc.pid, before)
    user1, kernel1 = user_system_seconds(arm.proc.pid)
    split = arm.split.setdefault(kind, [0.0, 0.0])
    split[0] += user1 - user0
    split[1] += kernel1 - kernel0
    cpu = max(0.0, sum(used.values()) - arm.idle_ns_per_s * elapsed)
    arm.measured.setdefault(kind, []).append((cpu, turns, wall))
    threads = arm.threads.setdefault(kind, {})
    for name, ns in used.items():
        threads[name] = threads.get(name, 0) + ns


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
        "idle_ms_per_s": arm.idle_ns_per_s / 1e6,
        # Where the CPU ran: memproxy's own code (and its libraries) or the kernel (sockets, files)
        "user_ms_per_turn": arm.split[kind][0] * 1000 / turns,
        "kernel_ms_per_turn": arm.split[kind][1] * 1000 / turns,
    }
    # Per thread, idle work included (the idle rate comes off the total only)
    out["thread_cpu_ms_per_turn"] = {name: ns / 1e6 / turns for name, ns in sorted(arm.threads[kind].items(),
                                                                                  key=lambda item: -item[1]) if ns}
    if arm.interval_s:
        out.update(upstream_ms=arm.delay_ms, interval_ms=arm.interval_s[kind] * 1000, late=arm.late.get(kind, 0))
    if base is not None:
        out["vs_smallest"] = out["cpu_ms_per_turn"] / _ms_per_turn(base.measured[kind])
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
    meter = CpuMeter({"memproxy": arm.proc.pid, "simulator": arm.upstream_pid}).start()
    before, t0 = thread_cpu_ns(arm.proc.pid), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in arm.conns))
    cpu = sum(cpu_ns_since(arm.proc.pid, before).values()) - arm.idle_ns_per_s * (time.perf_counter() - t0)
    sent = per_conn * len(arm.conns)
    return {"requests": sent, "errors": errors, "cpu_ms_per_request": cpu / 1e6 / sent, "cpu": meter.stop()}


async def _start_arm(h: Harness, upstream: Proc, label: str, size: int, max_size: int, agents: int,
                     windows: int) -> Arm:
    data = h.new_data_dir(f"turncost-{label.replace(' ', '-')}")
    # In a thread, as the start below: the arms are set up side by side (DuckDB, LanceDB and a new process
    # starting are mostly not this interpreter's work).
    ids = await asyncio.to_thread(seed.clone_agents, data, h.template_id, agents * windows, max_size,
                                  tag=f"ctx{size}", in_context=size, context_window=WINDOW)
    # Indexed for recall as a server would have indexed them turn by turn: otherwise the start-up repair
    # indexes them all, and the maintenance passes that follow land in the measured turns.
    await seed.index_recall(data)
    proc = await asyncio.to_thread(start_memproxy, h.log_dir, data, upstream.base + "/v1")
    h.log(f"turncost {label}: memproxy pid {proc.pid} on :{proc.port}")
    arm = Arm(label, size, proc, ids, upstream_pid=upstream.pid, windows=windows,
              settle_s=0.1 if h.scale.smoke else SETTLE_S)
    arm.warmup_errors = await warm_agents(h, ids, port=proc.port)
    arm.conns = await open_conns(proc.port, min(CONCURRENCY, agents))
    return arm


SPLIT_HEADER = "user / kernel ms/turn (vs smallest)"


def _split(p: dict[str, Any], base: dict[str, Any]) -> str:
    """User and kernel CPU per turn, each with its ratio to the smallest size's."""
    def one(key: str) -> str:
        return f"{p[key]:.2f}" + (f" ({p[key] / base[key]:.2f}x)" if base[key] > 0 else "")

    return f"{one('user_ms_per_turn')} / {one('kernel_ms_per_turn')}"


def _idle_penalty(interval_s: float, reps: int) -> dict[str, float]:
    """This process's CPU for one fixed piece of Python work (JSON out and in, ~1 ms) run back to back, and run
    once per `interval_s` with the process idle in between: what idling alone costs the same work here."""
    data = [{"role": "user", "content": f"message {i} about the trip to the lake"} for i in range(300)]

    def work() -> int:
        t0 = time.thread_time_ns()
        for _ in range(3):
            sum(len(m["content"]) for m in orjson.loads(orjson.dumps(data)))
        return time.thread_time_ns() - t0

    for _ in range(reps):
        work()
    busy = statistics.median(work() for _ in range(reps))
    idle = []
    for _ in range(reps):
        time.sleep(interval_s)
        idle.append(work())
    return {"busy_ms": busy / 1e6, "after_idle_ms": statistics.median(idle) / 1e6,
            "ratio": statistics.median(idle) / busy, "interval_ms": interval_s * 1000}


def _set_pace(h: Harness, paced: list[Arm], plain: Arm, upstream_ms: float) -> None:
    """The paced pair's schedule, from the largest size's plain turns (their first window)."""
    one_at_a_time = PACE_SLACK * (upstream_ms + statistics.median(plain.e2e["sequential"])) / 1000
    rate = plain.measured["concurrent"][0][1] / plain.measured["concurrent"][0][2]
    schedule = {"sequential": one_at_a_time, "concurrent": max(one_at_a_time, CONCURRENCY / (PACE_SHARE * rate))}
    for arm in paced:
        arm.interval_s = dict(schedule)
    h.log(f"turncost: paced turns {upstream_ms:.0f} ms upstream, one every {schedule['sequential'] * 1000:.0f} ms, "
          f"then {CONCURRENCY} connections each one every {schedule['concurrent'] * 1000:.0f} ms")


async def run(h: Harness) -> SuiteResult:
    sizes = SMOKE_SIZES if h.scale.smoke else SIZES
    agents = 4 if h.scale.smoke else AGENTS
    windows = 2 if h.scale.smoke else WINDOWS
    turns_per_agent = 2 if h.scale.smoke else TURNS_PER_AGENT
    upstream_ms = SMOKE_UPSTREAM_MS if h.scale.smoke else UPSTREAM_MS
    smallest, largest = sizes[0], sizes[-1]
    arms: list[Arm] = []
    assert h.sim is not None
    upstream = h.sim if h.turncost_upstream == "sim" else await asyncio.to_thread(start_fixed_upstream, h.log_dir)
    h.log(f"turncost: the memproxies' upstream is {h.turncost_upstream} (pid {upstream.pid})")
    try:
        specs = [(str(size), size) for size in sizes] + [(f"{size} paced", size) for size in (smallest, largest)]
        started = await asyncio.gather(*(_start_arm(h, upstream, label, size, largest, agents, windows)
                                         for label, size in specs), return_exceptions=True)
        arms += [arm for arm in started if isinstance(arm, Arm)]
        for failed in started:
            if isinstance(failed, BaseException):
                raise failed
        plain_largest, paced = arms[len(sizes) - 1], arms[len(sizes):]
        for arm in paced:
            arm.delay_ms = upstream_ms
        # One unmeasured turn on the first window's agents: connections and upstream pools warm.
        for arm in arms:
            await _reconnect(arm)
            first = arm.ids[::windows]
            await _send(h, arm, arm.conns, [first[w::len(arm.conns)] for w in range(len(arm.conns))], None)
        for arm in arms:
            await wait_quiet(arm.proc)
            arm.idle_ns_per_s = await idle_rate(arm.proc, 0.4 if h.scale.smoke else 2.0)
        h.log(f"turncost: {len(arms)} memproxies warm and idle ("
              + ", ".join(f"{arm.label} {arm.idle_ns_per_s / 1e6:.1f}" for arm in arms)
              + f" CPU-ms/s when idle); {windows} windows each")
        for w in range(windows):
            # Rotated order; in the first window the plain sizes come first, and set the paced schedule.
            for arm in arms[w % len(arms):] + arms[:w % len(arms)]:
                if arm in paced and not arm.interval_s:
                    _set_pace(h, paced, plain_largest, upstream_ms)
                await _window(h, arm, w, "sequential", max(1, turns_per_agent // 4))
                await _window(h, arm, w, "concurrent", turns_per_agent)
        requests = 40 if h.scale.smoke else PASSTHROUGH_REQUESTS
        passthrough = await _passthrough(h, arms[0], requests)
        penalty = _idle_penalty(paced[0].interval_s["sequential"], 8 if h.scale.smoke else 40)
    finally:
        for arm in arms:
            close_all(arm.conns)
            arm.proc.stop()
        if upstream is not h.sim:
            upstream.stop()

    base = arms[0]
    points: dict[str, Any] = {}
    for arm in arms[:len(sizes)]:
        point = _figures(arm, "concurrent", base)
        point["sequential"] = _figures(arm, "sequential", base)
        point["warmup_errors"] = arm.warmup_errors
        points[f"m{arm.size}"] = point
    for arm in paced:
        point = _figures(arm, "concurrent", paced[0])
        point["sequential"] = _figures(arm, "sequential", paced[0])
        point["warmup_errors"] = arm.warmup_errors
        points[f"m{arm.size}"]["paced"] = point
    for arm in arms:
        h.log(f"turncost {arm.label}: {_ms_per_turn(arm.measured['sequential']):.3f} CPU-ms per turn one at a time, "
              f"{_ms_per_turn(arm.measured['concurrent']):.3f} at concurrency {len(arm.conns)}; per thread "
              + "; ".join(f"{kind} " + ", ".join(f"{name} {ns / 1e6 / sum(t for _, t, _ in arm.measured[kind]):.2f}"
                                                  for name, ns in sorted(arm.threads[kind].items(),
                                                                         key=lambda item: -item[1])[:5])
                          for kind in KINDS))
    h.log(f"turncost passthrough: {passthrough['cpu_ms_per_request']:.3f} CPU-ms per request")
    h.log(f"turncost: fixed work {penalty['busy_ms']:.3f} ms back to back, {penalty['after_idle_ms']:.3f} ms after "
          f"{penalty['interval_ms']:.0f} ms idle ({penalty['ratio']:.2f}x)")

    result = SuiteResult()
    result.figures = {"agent": points, "passthrough": passthrough, "idle_penalty": penalty}
    picks: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = [
        ("1", lambda p: p["sequential"]), (str(CONCURRENCY), lambda p: p)]
    rows = []
    for label, pick in picks:
        base_ms = pick(points[f"m{smallest}"])["cpu_ms_per_turn"]
        for size in sizes:
            p = pick(points[f"m{size}"])
            rows.append([label, size, p["turns"], f"{p['cpu_ms_per_turn']:.3f}", f"{p['cpu_ms_per_turn'] / base_ms:.2f}x",
                         f"{p['window_ratio_median']:.2f}x", _split(p, pick(points[f"m{smallest}"])),
                         f"{p['turns_per_s']:.0f}", f"{p['e2e_ms']['p50']:.2f}", p["errors"]])
    result.tables.append(Table(f"CPU per agent turn, as fast as answered (memproxy, all threads; {windows} alternated "
                               "windows)",
                               ["concurrency", "in context", "turns", "CPU ms/turn", f"vs {smallest}",
                                "median window ratio", SPLIT_HEADER, "turns/s", "e2e p50 ms", "errors"], rows))
    rows = []
    for label, pick in picks:
        base_ms = pick(points[f"m{smallest}"]["paced"])["cpu_ms_per_turn"]
        for size in (smallest, largest):
            p = pick(points[f"m{size}"]["paced"])
            rows.append([label, size, f"{p['interval_ms']:.0f}", p["turns"], f"{p['cpu_ms_per_turn']:.3f}",
                         f"{p['cpu_ms_per_turn'] / base_ms:.2f}x", f"{p['window_ratio_median']:.2f}x",
                         _split(p, pick(points[f"m{smallest}"]["paced"])), f"{p['turns_per_s']:.1f}",
                         f"{p['e2e_ms']['p50']:.2f}", p["late"], p["errors"]])
    result.tables.append(Table(
        f"CPU per agent turn at an upstream's pace (it answers in {upstream_ms:.0f} ms; turns start on one fixed "
        "schedule for both sizes)",
        ["concurrency", "in context", "ms between a connection's turns", "turns", "CPU ms/turn", f"vs {smallest}",
         "median window ratio", SPLIT_HEADER, "turns/s", "e2e p50 ms", "late", "errors"], rows))
    result.tables.append(Table("CPU per passthrough request", ["requests", "CPU ms/request", "errors"],
                               [[passthrough["requests"], f"{passthrough['cpu_ms_per_request']:.3f}",
                                 passthrough["errors"]]]))
    result.notes.append(
        f"This machine, idle between turns: one fixed piece of Python work costs {penalty['busy_ms']:.3f} ms of CPU "
        f"back to back and {penalty['after_idle_ms']:.3f} ms run once every {penalty['interval_ms']:.0f} ms "
        f"({penalty['ratio']:.2f}x): the slower a size's turns come, the more each costs, whatever its history.")
    for size in sizes:
        note = bottleneck_note(f"{size} in context", points[f"m{size}"]["cpu"])
        if note:
            result.notes.append(note)
    return result
