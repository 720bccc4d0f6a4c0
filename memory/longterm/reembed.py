"""Back-filling vectors for rows stored without one (embedder down, slow, or configured later)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from memory.longterm import sql
from memory.longterm.embedder import Embedder, EmbeddingError
from memory.longterm.tables import MemoryTable

_FAILURES = (EmbeddingError, asyncio.TimeoutError, ValueError)


class Reembedder:
    """Finds `embedded = false` rows, embeds them in batches, and stores the vectors."""

    def __init__(self, embedder: Embedder, timeout: float, warn: Callable[[str], None]) -> None:
        self.embedder = embedder
        self.timeout = timeout
        self.warn = warn
        self.unembeddable: set[str] = set()  # ids whose text the embedder rejects on its own

    async def run(self, tables: list[MemoryTable], batch_size: int = 256) -> tuple[int, bool]:
        """Embed every pending row; returns (rows embedded, whether the pass finished)."""
        done = 0
        for table in tables:
            seen: set[str] = set()
            if table.dim is not None and self.embedder.dim not in (None, table.dim):
                continue  # the model changed size; its vectors cannot go in this table
            while table.exists:
                rows = [row for row in await self._pending(table, batch_size) if row["id"] not in seen]
                if not rows:
                    break  # nothing left, or only rows this pass already tried (rewritten meanwhile)
                seen.update(row["id"] for row in rows)
                vectors = await self._embed_rows(rows)
                if not vectors:
                    return done, False  # the embedder is down; the next round retries
                if not await self._store(table, rows, vectors):
                    return done, False
                done += len(vectors)
        return done, True

    async def _pending(self, table: MemoryTable, limit: int) -> list[dict[str, Any]]:
        where = "embedded = false"
        if self.unembeddable:
            where = sql.all_of(where, "NOT " + sql.id_in(sorted(self.unembeddable)))
        return await table.rows(where, ["id", "text"], limit=limit)

    async def _store(self, table: MemoryTable, rows: list[dict[str, Any]], vectors: dict[str, list[float]]) -> bool:
        dim = len(next(iter(vectors.values())))
        async with table.lock:
            await table.ensure(dim)
            if table.dim != dim:
                self.warn(f"{table.name}: embeddings have {dim} dimensions but the table has {table.dim}")
                return False
            kept = [row for row in rows if row["id"] in vectors]
            await table.set_vectors(
                [row["id"] for row in kept], [row["text"] for row in kept], [vectors[row["id"]] for row in kept]
            )
        return True

    async def _embed_rows(self, rows: list[dict[str, Any]]) -> dict[str, list[float]]:
        """Vectors by id. A failed batch is retried row by row so one bad text cannot block the rest."""
        try:
            vectors = await asyncio.wait_for(self.embedder.embed([row["text"] or "" for row in rows]), self.timeout)
            found = {row["id"]: vector for row, vector in zip(rows, vectors, strict=True)}
            if len({len(v) for v in found.values()}) > 1:
                raise ValueError("embedder returned vectors of different sizes")
            return found
        except _FAILURES as exc:
            if len(rows) == 1:
                self.warn(f"re-embedding failed: {exc!r}")
                return {}
        found = {}
        for index, row in enumerate(rows):
            single = await self._embed_rows([row])
            if not single and index == 0:
                return {}  # the first row alone fails too: an outage, not a bad row
            if not single:
                self.unembeddable.add(row["id"])
            found.update(single)
        return found
