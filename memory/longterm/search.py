"""Hybrid retrieval over one table: a vector search and a full-text search, fused by reciprocal rank.

Both searches apply the same `where` as a prefilter, so scoping (agent, tags, roles, dates) holds
inside each candidate list rather than after it. The FTS side also scans rows the index has not
absorbed yet, so fresh writes are found before the background optimize runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from memory.longterm.fusion import MAX_RESULTS, MODES, RRF_K, Ranked, candidate_count, fuse
from memory.longterm.lancedb_loader import ColumnOrdering
from memory.longterm.records import SearchHit
from memory.longterm.tables import VECTOR, MemoryTable

__all__ = ["MAX_RESULTS", "MODES", "RRF_K", "Ranked", "fuse", "hybrid", "search_table"]


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

