"""Throughput: closed-loop concurrency sweep, direct vs passthrough vs agent, zero-delay simulator."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench import seed
from bench.harness import Harness
from bench.loadgen import Result, close_all, open_conns
from bench.stats import summary
from bench.suite import CpuMeter, SuiteResult, Table, bottleneck_note
from bench.suites.common import PATHS, agent_request, direct_request, warm_agents
from bench.report import save_figure

ADDED_TTFT_LIMIT_MS = 10.0
ONE_AGENT_CONCURRENCY = 8


async def _closed_loop(h: Harness, path: str, concurrency: int, seconds: float,
                       agent_ids: list[str]) -> tuple[list[Result], float, dict[str, float]]:
    """`concurrency` workers send back-to-back requests for `seconds`; returns results, elapsed, CPU.

    Agent requests: worker w only uses agents whose index is w modulo the concurrency, so no two
    in-flight turns ever wait on the same agent's lock (unless there is only one agent).
    """
    assert h.sim is not None and h.memproxy is not None
    headers = h.profile("zero")
    port = h.sim.port if path == "direct" else h.memproxy.port
    conns = await open_conns(port, concurrency)
    warm = direct_request(headers)
    await asyncio.gather(*(c.send(warm, "warmup") for c in conns))
    direct = direct_request(headers)
    agents = [agent_request(a, headers) for a in agent_ids]
    usable = max(1, len(agents) - len(agents) % concurrency) if len(agents) > 1 else 1
    results: list[Result] = []
    meter = CpuMeter({"sim": h.sim.pid, "memproxy": h.memproxy.pid}).start()
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def worker(w: int) -> None:
        k = 0
        while time.perf_counter() < deadline:
            request = direct if path != "agent" else agents[(w + k * concurrency) % usable]
            results.append(await conns[w].send(request, path))
            k += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu = meter.stop()
    close_all(conns)
    return results, elapsed, cpu


def _point(results: list[Result], elapsed: float, cpu: dict[str, float]) -> dict[str, Any]:
    ok = [r for r in results if r.ok]
    return {"requests": len(results), "errors": len(results) - len(ok), "rps": len(ok) / elapsed,
            "ttft_ms": summary(r.ttft_ms for r in ok if r.ttft_ms is not None),
            "e2e_ms": summary(r.e2e_ms for r in ok), "cpu": cpu,
            "first_error": next((r.error for r in results if not r.ok), None)}


async def run(h: Harness) -> SuiteResult:
    scale = h.scale
    pool = max(scale.throughput_concurrency) * 4
    data = h.new_data_dir("throughput")
    ids = h.clone_agents(data, pool + 1, seed.IN_CONTEXT - 2, tag="throughput")
    one_agent, ids = ids[0], ids[1:]
    h.start_memproxy(data)
    await warm_agents(h, ids + [one_agent], concurrency=32)
    h.log(f"throughput: {pool} agents warm; {len(scale.throughput_concurrency)} concurrency levels x 3 paths "
          f"x {scale.throughput_seconds:.0f}s")
    result = SuiteResult()
    points: dict[str, Any] = {}
    for i, c in enumerate(scale.throughput_concurrency):
        level: dict[str, Any] = {}
        order = PATHS[i % 3:] + PATHS[:i % 3]
        for path in order:
            results, elapsed, cpu = await _closed_loop(h, path, c, scale.throughput_seconds, ids)
            level[path] = _point(results, elapsed, cpu)
            note = bottleneck_note(f"throughput {path} c={c}", cpu)
            if note:
                result.notes.append(note)
            if level[path]["first_error"]:
                result.notes.append(f"throughput {path} c={c}: first error: {level[path]['first_error']}")
        level["agent_over_direct"] = level["agent"]["rps"] / level["direct"]["rps"]
        level["passthrough_over_direct"] = level["passthrough"]["rps"] / level["direct"]["rps"]
        level["added_ttft_ms"] = {q: level["agent"]["ttft_ms"][q] - level["direct"]["ttft_ms"][q]
                                  for q in ("p50", "p99")}
        points[f"c{c}"] = level
        h.log(f"throughput c={c}: direct {level['direct']['rps']:.0f}/s, passthrough "
              f"{level['passthrough']['rps']:.0f}/s, agent {level['agent']['rps']:.0f}/s "
              f"(ratio {level['agent_over_direct']:.2f})")
    results, elapsed, cpu = await _closed_loop(h, "agent", ONE_AGENT_CONCURRENCY, scale.throughput_seconds / 2,
                                               [one_agent])
    one = _point(results, elapsed, cpu)
    h.stop_memproxy()
    result.figures = {"levels": points, "one_agent": one, "max_good_concurrency": _max_good(points)}
    result.tables = _tables(points, one)
    result.notes.append(f"max_good_concurrency = highest level with no errors on any path and agent TTFT p99 "
                        f"within {ADDED_TTFT_LIMIT_MS:.0f} ms of direct TTFT p99 at the same level (unpaired: "
                        "under load TTFT includes queueing).")
    result.notes.append(f"one_agent: {ONE_AGENT_CONCURRENCY} clients on a single agent; its turns are "
                        "serialised by design and its context grows during the point.")
    return result


def _max_good(points: dict[str, Any]) -> int:
    best = 0
    for label, level in points.items():
        errors = sum(level[p]["errors"] for p in PATHS)
        if errors == 0 and level["added_ttft_ms"]["p99"] < ADDED_TTFT_LIMIT_MS:
            best = max(best, int(label[1:]))
    return best


def _tables(points: dict[str, Any], one: dict[str, Any]) -> list[Table]:
    rows = []
    for label, level in points.items():
        rows.append([label[1:], *(level[p]["rps"] for p in PATHS), level["agent_over_direct"],
                     *(level[p]["errors"] for p in PATHS), level["direct"]["ttft_ms"]["p99"],
                     level["agent"]["ttft_ms"]["p99"], level["agent"]["cpu"]["memproxy_pct"],
                     level["agent"]["cpu"]["client_pct"], level["agent"]["cpu"]["sim_pct"]])
    rows.append([f"{ONE_AGENT_CONCURRENCY} (one agent)", "", "", one["rps"], "", "", "", one["errors"], "",
                 one["ttft_ms"]["p99"], one["cpu"]["memproxy_pct"], one["cpu"]["client_pct"], one["cpu"]["sim_pct"]])
    headers = ["concurrency", "direct rps", "pass rps", "agent rps", "agent/direct", "direct err", "pass err",
               "agent err", "direct TTFT p99", "agent TTFT p99", "memproxy CPU% (agent)", "client CPU% (agent)",
               "sim CPU% (agent)"]
    return [Table("Throughput (zero-delay simulator; requests/s, ms)", headers, rows)]


def plot(result: SuiteResult, out_dir: Path, stem: str) -> list[str]:
    import matplotlib.pyplot as plt

    levels = result.figures.get("levels", {})
    if not levels:
        return []
    xs = [int(k[1:]) for k in levels]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for path in PATHS:
        ax.plot(xs, [levels[k][path]["rps"] for k in levels], marker="o", label=path)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrency (closed loop)")
    ax.set_ylabel("requests / s")
    ax.set_title("Throughput, zero-delay simulator")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out_dir, f"{stem}-throughput.png")
