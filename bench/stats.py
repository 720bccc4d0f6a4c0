"""Percentile summaries and paired differences."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

QUANTILES = (50, 90, 99)


def summary(values: Iterable[float]) -> dict[str, float]:
    """n, mean, min, p50, p90, p99, max of finite values (NaN figures when there are none)."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if data.size == 0:
        return {"n": 0, "mean": math.nan, "min": math.nan, "p50": math.nan, "p90": math.nan, "p99": math.nan,
                "max": math.nan}
    quantiles = np.percentile(data, QUANTILES)
    out: dict[str, float] = {"n": int(data.size), "mean": float(data.mean()), "min": float(data.min())}
    out.update({f"p{q}": float(v) for q, v in zip(QUANTILES, quantiles)})
    out["max"] = float(data.max())
    return out


def paired_diffs(a: dict[Any, float | None], b: dict[Any, float | None]) -> list[float]:
    """a[k] - b[k] for every key both sides measured (the pairs are interleaved requests)."""
    return [a[k] - b[k] for k in a.keys() & b.keys() if a[k] is not None and b[k] is not None]  # type: ignore[operator]


def paired_gap_diffs(a: dict[Any, Sequence[float]], b: dict[Any, Sequence[float]]) -> list[float]:
    """Inter-chunk gap differences, position by position, of paired streams of the same length."""
    out: list[float] = []
    for key in a.keys() & b.keys():
        out.extend(x - y for x, y in zip(a[key], b[key]))
    return out


def flatten(tree: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as dotted keys (lists are samples, not figures: skipped)."""
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(tree, bool):
        out[prefix] = float(tree)
    elif isinstance(tree, (int, float)):
        out[prefix] = float(tree)
    return out


def rounded(tree: Any, digits: int = 3) -> Any:
    """The same tree with floats rounded, for readable JSON."""
    if isinstance(tree, dict):
        return {k: rounded(v, digits) for k, v in tree.items()}
    if isinstance(tree, list):
        return [rounded(v, digits) for v in tree]
    if isinstance(tree, float) and math.isfinite(tree):
        return round(tree, digits)
    return tree
