"""Reciprocal rank fusion, the one scoring contract every long-term backend's hybrid search keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RRF_K = 60  # the usual reciprocal-rank-fusion constant: score = sum 1 / (RRF_K + rank)
MODES = ("hybrid", "vector", "fts")
MAX_RESULTS = 1000  # upper bound on top_k so one call cannot pull a whole table through fusion


@dataclass
class Ranked:
    row: dict[str, Any]
    rrf_score: float
    vector_rank: int | None
    fts_rank: int | None


def candidate_count(top_k: int) -> int:
    """How many candidates each side contributes before fusion."""
    return max(top_k * 4, 20)


def fuse(vector_rows: list[dict[str, Any]], text_rows: list[dict[str, Any]], top_k: int) -> list[Ranked]:
    """Reciprocal rank fusion; ties go to the newer row, then the id, so results are deterministic."""
    fused: dict[str, Ranked] = {}
    for rank, row in enumerate(vector_rows, start=1):
        fused[row["id"]] = Ranked(row, 1.0 / (RRF_K + rank), rank, None)
    for rank, row in enumerate(text_rows, start=1):
        hit = fused.get(row["id"])
        if hit is None:
            fused[row["id"]] = Ranked(row, 1.0 / (RRF_K + rank), None, rank)
        elif hit.fts_rank is None:
            hit.rrf_score += 1.0 / (RRF_K + rank)
            hit.fts_rank = rank
    ordered = sorted(fused.values(), key=lambda h: (-h.rrf_score, -_ts(h.row), h.row["id"]))
    return ordered[:top_k]


def _ts(row: dict[str, Any]) -> float:
    created = row.get("created_at")
    return created.timestamp() if created is not None else 0.0
