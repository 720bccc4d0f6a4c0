"""`python -m bench compare A.json B.json`: every figure both runs have, with its delta."""

from __future__ import annotations

import math
from pathlib import Path

import orjson

from bench.stats import flatten

# Figures that describe the run rather than measure it: left out unless --all.
_BOOKKEEPING = ("requests", ".n", "cpu.", "errors", "turns", "loaded", "agents.a")


def load_figures(path: Path) -> tuple[dict[str, float], dict[str, object]]:
    doc = orjson.loads(path.read_bytes())
    return flatten(doc.get("figures", {})), doc.get("machine", {})


def compare(a_path: Path, b_path: Path, *, match: str = "", show_all: bool = False) -> str:
    a, a_machine = load_figures(a_path)
    b, b_machine = load_figures(b_path)
    keys = [k for k in a if k in b and match in k]
    if not show_all:
        keys = [k for k in keys if not any(part in k for part in _BOOKKEEPING if not k.endswith(".agents"))]
    width = max((len(k) for k in keys), default=10)
    lines = [f"A: {a_path.name}  commit {str(a_machine.get('git_commit', ''))[:12]}",
             f"B: {b_path.name}  commit {str(b_machine.get('git_commit', ''))[:12]}", "",
             f"{'figure':<{width}}  {'A':>12}  {'B':>12}  {'B-A':>12}  {'B/A-1':>8}"]
    for key in keys:
        x, y = a[key], b[key]
        delta = y - x
        rel = f"{100 * delta / abs(x):+7.1f}%" if x and math.isfinite(x) and math.isfinite(y) else "     n/a"
        lines.append(f"{key:<{width}}  {x:>12.3f}  {y:>12.3f}  {delta:>+12.3f}  {rel:>8}")
    only = sorted(set(a) ^ set(b))
    if only:
        lines += ["", f"{len(only)} figure(s) present in only one run (e.g. {', '.join(only[:3])})"]
    return "\n".join(lines)
