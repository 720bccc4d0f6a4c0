"""Write a run: JSON with machine info and every figure, a Markdown summary, and the suites' PNG plots."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from bench.stats import rounded
from bench.suite import Suite, SuiteResult, Table
from bench.targets import check

PACKAGES = ("memproxy", "starlette", "uvicorn", "httpx", "duckdb", "lancedb", "orjson", "numpy", "uvloop",
            "httptools", "tiktoken")


def machine_info() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    mem_kb = next((int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal:")), 0)
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu_model": cpu, "cores": os.cpu_count(), "memory_mb": mem_kb // 1024,
            "python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
            "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(_git("status", "--porcelain")),
            "time_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def _lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.readlines()
    except OSError:
        return []


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent.parent)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def markdown_table(table: Table) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(table.headers) + " |",
             "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.rows]
    return "\n".join(lines)


def summary_markdown(doc: dict[str, Any], results: dict[str, SuiteResult]) -> str:
    m = doc["machine"]
    dirty = " (dirty)" if m["git_dirty"] else ""
    kind = "SMOKE run" if doc["smoke"] else "full run"
    parts = [f"# memproxy bench — {doc['run']}", "",
             f"{m['cpu_model']}, {m['cores']} cores, {m['memory_mb']} MB; Python {m['python']}; "
             f"commit {m['git_commit'][:12]}{dirty}; {kind}; suites: {', '.join(results)}.", ""]
    if doc["targets"]:
        parts.append(markdown_table(Table("Targets (DESIGN.md)", ["target", "value", "limit", "met"],
                                          [[t["target"], t["value"], t["limit"], t["met"]] for t in doc["targets"]])))
        parts.append("")
    for name, result in results.items():
        parts.append(f"## {name}  ({doc['durations_s'][name]:.0f} s)")
        parts.append("")
        for table in result.tables:
            parts += [markdown_table(table), ""]
        parts += [f"- {note}" for note in result.notes]
        parts += [f"- plot: `{p}`" for p in result.plots]
        parts.append("")
    return "\n".join(parts)


def write_run(out_dir: Path, stem: str, smoke: bool, suites: dict[str, Suite], results: dict[str, SuiteResult],
              durations: dict[str, float], backend: str = "embedded") -> tuple[Path, Path, str]:
    """Plots first (their names go into the JSON), then the JSON, then the Markdown; returns paths and text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    for name, result in results.items():
        if suites[name].plot is not None:
            result.plots = suites[name].plot(result, out_dir, stem)
    figures = {name: result.figures for name, result in results.items()}
    doc: dict[str, Any] = {
        "run": stem, "smoke": smoke, "backend": backend, "machine": machine_info(), "durations_s": durations,
        "targets": check(figures), "figures": rounded(figures, 4),
        "notes": {name: r.notes for name, r in results.items()},
        "plots": {name: r.plots for name, r in results.items()},
        "samples": rounded({name: r.samples for name, r in results.items()}, 3),
    }
    json_path = out_dir / f"{stem}.json"
    json_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    text = summary_markdown(doc, results)
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(text)
    return json_path, md_path, text


def cdf(ax: Any, values: Any, label: str, *fmt: str, **style: Any) -> None:
    """Plot the empirical CDF of already-sorted `values` (a numpy array) on `ax`; nothing if empty."""
    if values.size:
        import numpy as np

        ax.plot(values, np.arange(1, values.size + 1) / values.size, *fmt, label=label, **style)


def save_figure(fig: Any, out_dir: Path, name: str) -> list[str]:
    """Lay out, write as PNG beside the results, release; returns the file names for the summary."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=110)
    plt.close(fig)
    return [name]
