"""Latency: direct, passthrough and agent paths interleaved against one simulator; what memproxy adds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import seed
from bench.harness import Harness
from bench.stats import summary
from bench.suite import CpuMeter, SuiteResult, Table, bottleneck_note
from bench.suites.common import PATHS, added_figures, paired_rounds, path_figures, split_agents, warm_agents
from bench.report import cdf, save_figure

PROFILES = ("zero", "realistic")


def _phases(h: Harness) -> list[tuple[str, int, int]]:
    """(profile, concurrency, rounds per worker) for every phase of the run."""
    out = []
    for profile in PROFILES:
        for c in h.scale.latency_concurrency:
            key = f"{profile}/{c}" if f"{profile}/{c}" in h.scale.latency_rounds else f"{profile}/{16 if c > 1 else 1}"
            out.append((profile, c, h.scale.latency_rounds[key]))
    return out


async def run(h: Harness) -> SuiteResult:
    phases = _phases(h)
    per_worker = {(p, c): math.ceil(rounds / h.scale.turns_per_agent) for p, c, rounds in phases}
    total = sum(c * per_worker[(p, c)] for p, c, _ in phases)
    data = h.new_data_dir("latency")
    # 48 seeded + 2 from the warm-up turn = 50 in-context messages when measurement starts.
    ids = h.clone_agents(data, total, seed.IN_CONTEXT - 2, tag="latency")
    h.log(f"latency: seeded {total} agents x {seed.IN_CONTEXT - 2} messages, 4 blocks")
    mp = h.start_memproxy(data)
    errors = await warm_agents(h, ids)
    assert h.sim is not None
    result = SuiteResult()
    result.figures["warmup_errors"] = errors
    samples: dict[str, Any] = {}
    taken = 0
    for profile, c, rounds in phases:
        label = f"{profile}/c{c}"
        count = c * per_worker[(profile, c)]
        agents = split_agents(ids[taken:taken + count], c, per_worker[(profile, c)])
        taken += count
        h.log(f"latency {label}: {c} workers x {rounds} rounds x 3 paths")
        meter = CpuMeter({"sim": h.sim.pid, "memproxy": mp.pid}).start()
        results = await paired_rounds(h, PATHS, agents, rounds, h.scale.turns_per_agent, h.profile(profile))
        cpu = meter.stop()
        phase: dict[str, Any] = {p: path_figures(results[p]) for p in PATHS}
        phase["added"] = {p: added_figures(results, p) for p in ("passthrough", "agent")}
        phase["cpu"] = cpu
        result.figures.setdefault(profile, {})[f"c{c}"] = phase
        samples[label] = {p: [r.ttft_ms for r in results[p] if r.ok and r.ttft_ms is not None] for p in PATHS}
        note = bottleneck_note(f"latency {label}", cpu)
        if note:
            result.notes.append(note)
        h.log(f"latency {label}: added TTFT agent p50 {phase['added']['agent']['ttft_ms']['p50']:.2f} ms, "
              f"p99 {phase['added']['agent']['ttft_ms']['p99']:.2f} ms; errors "
              f"{sum(phase[p]['errors'] for p in PATHS)}")
    h.stop_memproxy()
    result.samples["ttft_ms"] = samples
    client = summary(v for profile in result.figures.values() if isinstance(profile, dict)
                     for phase in profile.values() for p in PATHS
                     for v in [phase[p]["client_us_per_request"]["p50"]])
    result.figures["client_us_per_request_p50"] = client["p50"]
    result.tables = _tables(result.figures)
    result.notes.append("Inter-chunk gaps under the zero profile measure how tokens are coalesced into reads, "
                        "not a delay: read the realistic profile (20 ms/token) for added inter-chunk delay.")
    result.notes.append(f"Client parsing cost: ~{client['p50']:.0f} us of CPU per streamed response (p50); "
                        "the client CPU share is in the JSON (`cpu.client_pct`).")
    return result


def _tables(figures: dict[str, Any]) -> list[Table]:
    rows = []
    for profile in PROFILES:
        for label, phase in figures.get(profile, {}).items():
            for metric, name in (("ttft_ms", "TTFT"), ("gap_ms", "inter-chunk"), ("e2e_ms", "end-to-end")):
                row: list[Any] = [f"{profile} {label}", name]
                for p in PATHS:
                    row += [phase[p][metric]["p50"], phase[p][metric]["p99"]]
                for p in ("passthrough", "agent"):
                    added = phase["added"][p][metric]
                    row += [added["p50"], added["p90"], added["p99"]]
                rows.append(row)
    headers = ["phase", "metric", "direct p50", "direct p99", "pass p50", "pass p99", "agent p50", "agent p99",
               "+pass p50", "+pass p90", "+pass p99", "+agent p50", "+agent p90", "+agent p99"]
    errors = [[f"{profile} {label}", *(phase[p]["errors"] for p in PATHS), phase["cpu"]["client_pct"],
               phase["cpu"]["sim_pct"], phase["cpu"]["memproxy_pct"]]
              for profile in PROFILES for label, phase in figures.get(profile, {}).items()]
    reported = [[f"{profile} {label}", *(v for p in ("passthrough", "agent")
                                        for v in (phase[p]["server_timing_ms"]["p50"],
                                                  phase["added"][p]["ttft_ms"]["p50"]))]
                for profile in PROFILES for label, phase in figures.get(profile, {}).items()]
    return [Table("Latency (ms; + = paired difference vs direct)", headers, rows),
            Table("Server-Timing `memproxy;dur` p50 (memproxy's own time before the upstream call) beside the "
                  "measured added TTFT p50 (ms)",
                  ["phase", "pass Server-Timing", "+pass TTFT", "agent Server-Timing", "+agent TTFT"], reported),
            Table("Latency phases: errors and CPU (% of one core)",
                  ["phase", "direct err", "pass err", "agent err", "client CPU", "sim CPU", "memproxy CPU"], errors)]


def plot(result: SuiteResult, out_dir: Path, stem: str) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np

    samples = result.samples.get("ttft_ms", {})
    if not samples:
        return []
    fig, axes = plt.subplots(1, len(samples), figsize=(4.2 * len(samples), 3.6), squeeze=False)
    for ax, (label, by_path) in zip(axes[0], samples.items()):
        for path in PATHS:
            values = np.sort(np.asarray(by_path.get(path, []), dtype=float))
            cdf(ax, values, path)
        ax.set_title(f"TTFT CDF, {label}")
        ax.set_xlabel("time to first content token (ms)")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, out_dir, f"{stem}-latency-cdf.png")
