"""What a suite returns, and the CPU meter that says who was busy while it ran."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import cpu_seconds

# Above this share of one core a single-threaded process is the bottleneck, not a bystander.
BUSY_CORE = 0.85
CORES = os.cpu_count() or 1


@dataclass
class Table:
    """A Markdown table of the summary."""

    title: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class SuiteResult:
    figures: dict[str, Any] = field(default_factory=dict)  # nested dicts of numbers: what compare diffs
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # bottleneck notes and caveats, printed under the tables
    samples: dict[str, Any] = field(default_factory=dict)  # raw values for plots (kept in the JSON)
    plots: list[str] = field(default_factory=list)  # file names written beside the JSON


@dataclass(frozen=True)
class Suite:
    name: str
    help: str
    run: Callable[[Any], Awaitable[SuiteResult]]  # (Harness) -> SuiteResult
    plot: Callable[[SuiteResult, Path, str], list[str]] | None = None  # (result, out dir, run stem) -> files


class CpuMeter:
    """CPU used by the client (this process), the simulator and memproxy between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        now = {"client": time.process_time()}
        for name, pid in self.pids.items():
            now[name] = cpu_seconds(pid)
        return now

    def start(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._cpu0 = self._read()
        return self

    def stop(self) -> dict[str, float]:
        """Each process's CPU as a percentage of one core, plus the machine total (max 100 * cores)."""
        wall = time.perf_counter() - self._t0
        used = self._read()
        out = {f"{name}_pct": 100 * (used[name] - self._cpu0[name]) / wall for name in used}
        out["total_pct"] = sum(out.values())
        return out


def bottleneck_note(label: str, cpu: dict[str, float]) -> str | None:
    """Say which process bounds a figure when one of them, or the whole machine, is saturated."""
    busy = [name.removesuffix("_pct") for name, pct in cpu.items()
            if name != "total_pct" and name != "memproxy_pct" and pct >= 100 * BUSY_CORE]
    saturated = cpu["total_pct"] >= 100 * CORES * BUSY_CORE
    memproxy_busy = cpu.get("memproxy_pct", 0.0) >= 100 * BUSY_CORE
    if not busy and not saturated:
        if memproxy_busy:
            return (f"{label}: memproxy near a full core ({cpu['memproxy_pct']:.0f}%): its own CPU is the limit, "
                    "so latency here includes queueing behind other requests.")
        return None
    parts = []
    if busy:
        loads = ", ".join(f"{n} {cpu[n + '_pct']:.0f}%" for n in busy)
        parts.append(f"{' and '.join(busy)} near a full core ({loads})")
    if saturated:
        parts.append(f"machine CPU saturated ({cpu['total_pct']:.0f}% of {100 * CORES}%: client, simulator and "
                     "memproxy share the cores)")
    return f"{label}: bounded by " + "; ".join(parts) + ", not by memproxy alone."
