"""Vectors of PostgreSQL long-term memory: the shared INSERT (with the embedding when there is one), embedding,
and the background loop that gives vectors to rows stored without one.

A mixin of `PostgresLongTermMemory` (postgres_longterm.py), which holds the pool and the settings declared
below. Per turn, with an embedder, the write-behind queue upserts the turn's recall rows once more with
their vectors (one INSERT ... ON CONFLICT per batch): B-tree, GIN and HNSW inserts, each logarithmic in
the table, so the cost per row grows only slowly with the table; without an embedder nothing here runs
per turn (the store's commit wrote the rows).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from memory.longterm.embedder import Embedder, RareWarning, embed_or_none
from memory.postgres_search import ensure_hnsw, vector_literal
from memory.postgres_sql import ReportingPool, text_safe

log = logging.getLogger("memproxy.longterm")

_REEMBED_BATCH = 256


class PostgresVectors:
    """Writes with vectors, embedding and re-embedding; mixed into `PostgresLongTermMemory`."""

    embedder: Embedder | None
    vectors_available: bool
    reembed_interval: float
    write_embed_timeout: float
    query_embed_timeout: float
    _pool: asyncpg.Pool | None
    _indexed_dims: set[tuple[str, int]]
    _maybe_unembedded: bool
    _warn: RareWarning

    @property
    def vector_search(self) -> bool:
        """Whether searches can rank by vector at all (an embedder, and pgvector on the server)."""
        return self.embedder is not None and self.vectors_available

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool, whose calls raise StoreUnavailable when the database does not answer (archival routes: 503)."""
        if self._pool is None:
            raise RuntimeError("PostgresLongTermMemory is not open")
        return ReportingPool(self._pool)

    async def _insert(self, table: str, names: str, select: str, arrays: str, aliases: str,
                      columns: list[list[Any]], vectors: list[list[float]] | None, *, upsert: bool) -> None:
        """One INSERT ... SELECT FROM unnest for every row, the embedding too when there is one."""
        args: list[Any] = [text_safe(column) for column in columns]
        if self.vectors_available:
            names += ", embedding"
            select += ", u.embedding::vector"
            arrays += f", ${len(args) + 1}::text[]"
            aliases += ", embedding"
            args.append([vector_literal(v) for v in vectors] if vectors else [None] * len(columns[0]))
        sql = f"INSERT INTO {table} ({names}) SELECT {select} FROM unnest({arrays}) AS u({aliases})"
        if upsert:
            sets = ", ".join(f"{n.strip()} = EXCLUDED.{n.strip()}" for n in names.split(",") if n.strip() != "id")
            sql += f" ON CONFLICT (id) DO UPDATE SET {sets}"
        async with self.pool.acquire() as con:
            if vectors and self.vectors_available and (table, len(vectors[0])) not in self._indexed_dims:
                await ensure_hnsw(con, table, len(vectors[0]))
                self._indexed_dims.add((table, len(vectors[0])))
            await con.execute(sql, *args)
        if self.embedder is not None and vectors is None:
            self._maybe_unembedded = True

    async def _embed(self, texts: list[str], timeout: float) -> list[list[float]] | None:
        """Vectors for `texts`, or None (rows are then stored for full-text search and re-embedded later)."""
        if not self.vector_search or not texts:
            return None
        return await embed_or_none(self.embedder, texts, timeout, self._warn)  # type: ignore[arg-type]

    async def _query_vector(self, query: str) -> list[float] | None:
        vectors = await self._embed([query], self.query_embed_timeout)
        return vectors[0] if vectors else None

    async def embed_pending(self) -> int:
        """Give vectors to rows stored without one; returns how many were embedded."""
        if not self.vector_search:
            return 0
        self._maybe_unembedded = False  # cleared first: a write failing meanwhile sets it again
        done = 0
        for table in ("passages", "recall"):
            while True:
                rows = await self.pool.fetch(
                    f"SELECT id, text FROM {table} WHERE embedding IS NULL ORDER BY id LIMIT {_REEMBED_BATCH}")
                if not rows:
                    break
                vectors = await self._embed([row[1] for row in rows], self.write_embed_timeout)
                if vectors is None:
                    self._maybe_unembedded = True
                    return done
                async with self.pool.acquire() as con:
                    await ensure_hnsw(con, table, len(vectors[0]))
                    await con.execute(
                        f"UPDATE {table} SET embedding = u.v::vector FROM unnest($1::text[], $2::text[]) AS u(id, v)"
                        f" WHERE {table}.id = u.id", [row[0] for row in rows], [vector_literal(v) for v in vectors])
                done += len(rows)
        return done

    async def _reembed_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reembed_interval)
            if self._maybe_unembedded:
                try:
                    await self.embed_pending()
                except Exception:
                    log.exception("re-embedding failed")
