"""Hybrid retrieval over one table: a vector search and a full-text search, fused by reciprocal rank.

Both searches apply the same `where` as a prefilter, so scoping (agent, tags, roles, dates) holds
inside each candidate list rather than after it. The FTS side also scans rows the index has not
absorbed yet, so fresh writes are found before the background optimize runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lancedb.query import ColumnOrdering

from memory.longterm.records import SearchHit
from memory.longterm.tables import VECTOR, MemoryTable

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


async def vector_candidates(
    table: MemoryTable, where: str, vector: list[float], columns: list[str], limit: int
) -> list[dict[str, Any]]:
    query = (
        table.table.query()
        .nearest_to(vector)
        .column(VECTOR)
        .distance_type("cosine")
        .where(where)
        .select(columns + ["_distance"])
        .limit(limit)
    )
    return (await query.to_arrow()).to_pylist()


async def text_candidates(
    table: MemoryTable, where: str, text: str, columns: list[str], limit: int
) -> list[dict[str, Any]]:
    # `_score` is selected explicitly: LanceDB warns when an FTS projection leaves it out.
    query = table.table.query().nearest_to_text(text, columns="text").where(where).select(columns + ["_score"])
    return (await query.limit(limit).to_arrow()).to_pylist()


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


async def hybrid(
    table: MemoryTable,
    where: str,
    text: str,
    vector: list[float] | None,
    columns: list[str],
    top_k: int,
) -> list[Ranked]:
    """Fuse whichever of the two searches can run: vector if `vector` is given, FTS if `text` is."""
    limit = candidate_count(top_k)
    vector_job = vector_candidates(table, where, vector, columns, limit) if vector is not None else _nothing()
    text_job = text_candidates(table, where, text, columns, limit) if text.strip() else _nothing()
    vector_rows, text_rows = await asyncio.gather(vector_job, text_job)
    return fuse(vector_rows, text_rows, top_k)


async def search_table(
    table: MemoryTable,
    where: str,
    query: str,
    top_k: int,
    mode: str,
    columns: list[str],
    build: Callable[[dict[str, Any]], Any],
    query_vector: Callable[[MemoryTable, str], Awaitable[list[float] | None]],
) -> list[SearchHit]:
    """Search one table in `mode`, falling back to full-text when no query vector can be had."""
    if mode not in MODES:
        raise ValueError(f"search mode must be one of {MODES}, not {mode!r}")
    top_k = min(int(top_k), MAX_RESULTS)
    if not table.exists or top_k <= 0:
        return []
    query = query or ""
    if not query.strip():
        # Nothing to rank by: the newest matching rows, so a date-only lookup still answers.
        order = [ColumnOrdering(column_name="created_at", ascending=False)]
        rows = await table.rows(where, columns, limit=top_k, order=order)
        return [SearchHit(build(row), 0.0, None, None, "recent") for row in rows]
    vector = await query_vector(table, query) if mode != "fts" else None
    used = mode if vector is not None else "fts"
    ranked = await hybrid(table, where, "" if used == "vector" else query, vector, columns, top_k)
    return [SearchHit(build(r.row), r.rrf_score, r.vector_rank, r.fts_rank, used) for r in ranked]


async def _nothing() -> list[dict[str, Any]]:
    return []


def _ts(row: dict[str, Any]) -> float:
    created = row.get("created_at")
    return created.timestamp() if created is not None else 0.0
