"""Hybrid search in PostgreSQL: pgvector cosine distance and tsvector full-text, fused by reciprocal rank.

Both searches run the same WHERE (agent, tags or roles, dates), so scoping holds inside each candidate
list. Full-text matches any query word (as LanceDB's BM25 does) and ranks with `ts_rank`. Vectors of
any size share one `vector` column; each size gets its own partial HNSW index, made when first seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg

from memory.longterm.fusion import MAX_RESULTS, MODES, candidate_count, fuse
from memory.longterm.records import SearchHit
from memory.postgres_sql import text_safe

# plainto_tsquery ANDs the words; OR them, so a passage sharing any word is a candidate (BM25-like recall).
_ANY_WORD = "replace(plainto_tsquery('simple', {})::text, '&', '|')::tsquery"
# HNSW filters after its graph walk: a wider walk keeps an agent's rows from being crowded out by others'.
_EF_SEARCH = 400


class Where:
    """A WHERE clause with numbered parameters: each `{}` in a condition becomes the next `$n`."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.args: list[Any] = []

    def add(self, condition: str, *args: Any) -> Where:
        numbers = [f"${len(self.args) + i}" for i in range(1, len(args) + 1)]
        self.conditions.append(condition.format(*numbers))
        self.args.extend(text_safe(a) for a in args)
        return self

    def param(self, value: Any) -> str:
        self.args.append(text_safe(value))
        return f"${len(self.args)}"

    def copy(self) -> Where:
        other = Where()
        other.conditions, other.args = list(self.conditions), list(self.args)
        return other

    @property
    def sql(self) -> str:
        return " AND ".join(f"({c})" for c in self.conditions) or "true"


def time_range(where: Where, lower: datetime | None, upper: datetime | None) -> Where:
    if lower is not None:
        where.add("created_at >= {}", lower)
    if upper is not None:
        where.add("created_at <= {}", upper)
    return where


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form; asyncpg has no codec for the type, and the text cast is exact for floats."""
    return "[" + ",".join(repr(float(v)) for v in vector) + "]"


async def ensure_hnsw(con: asyncpg.Connection, table: str, dim: int) -> None:
    """The partial HNSW index for `dim`-sized vectors of `table` (one statement; IF NOT EXISTS makes it idempotent)."""
    await con.execute(
        f"CREATE INDEX IF NOT EXISTS {table}_hnsw_{int(dim)} ON {table}"
        f" USING hnsw ((embedding::vector({int(dim)})) vector_cosine_ops) WHERE vector_dims(embedding) = {int(dim)}"
    )


async def vector_candidates(
    pool: asyncpg.Pool, table: str, where: Where, columns: str, vector: list[float], limit: int
) -> list[dict[str, Any]]:
    dim = len(vector)
    w = where.copy().add(f"embedding IS NOT NULL AND vector_dims(embedding) = {dim}")
    q = w.param(vector_literal(vector))
    sql = (f"SELECT {columns} FROM {table} WHERE {w.sql}"
           f" ORDER BY embedding::vector({dim}) <=> {q}::vector({dim}), id LIMIT {int(limit)}")
    async with pool.acquire() as con, con.transaction():
        await con.execute(f"SET LOCAL hnsw.ef_search = {_EF_SEARCH}")
        return [dict(row) for row in await con.fetch(sql, *w.args)]


async def text_candidates(
    pool: asyncpg.Pool, table: str, where: Where, columns: str, text: str, limit: int
) -> list[dict[str, Any]]:
    w = where.copy()
    query = _ANY_WORD.format(w.param(text))
    sql = (f"SELECT {columns} FROM {table}, (SELECT {query} AS q) AS query WHERE {w.sql} AND tsv @@ query.q"
           f" ORDER BY ts_rank(tsv, query.q, 1) DESC, created_at DESC, id LIMIT {int(limit)}")
    return [dict(row) for row in await pool.fetch(sql, *w.args)]


async def search(
    pool: asyncpg.Pool,
    table: str,
    where: Where,
    columns: str,
    query: str,
    top_k: int,
    mode: str,
    build: Callable[[dict[str, Any]], Any],
    query_vector: Callable[[str], Awaitable[list[float] | None]],
) -> list[SearchHit]:
    """Search one table in `mode`, falling back to full-text when no query vector can be had."""
    if mode not in MODES:
        raise ValueError(f"search mode must be one of {MODES}, not {mode!r}")
    top_k = min(int(top_k), MAX_RESULTS)
    if top_k <= 0:
        return []
    query = query or ""
    if not query.strip():
        # Nothing to rank by: the newest matching rows, so a date-only lookup still answers.
        sql = f"SELECT {columns} FROM {table} WHERE {where.sql} ORDER BY created_at DESC, id LIMIT {top_k}"
        rows = await pool.fetch(sql, *where.args)
        return [SearchHit(build(dict(row)), 0.0, None, None, "recent") for row in rows]
    vector = await query_vector(query) if mode != "fts" else None
    used = mode if vector is not None else "fts"
    limit = candidate_count(top_k)
    vector_job = vector_candidates(pool, table, where, columns, vector, limit) if vector is not None else _nothing()
    text_job = text_candidates(pool, table, where, columns, query, limit) if used != "vector" else _nothing()
    vector_rows, text_rows = await asyncio.gather(vector_job, text_job)
    ranked = fuse(vector_rows, text_rows, top_k)
    return [SearchHit(build(r.row), r.rrf_score, r.vector_rank, r.fts_rank, used) for r in ranked]


async def _nothing() -> list[dict[str, Any]]:
    return []
