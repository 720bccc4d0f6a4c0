"""One LanceDB table of long-term memory, created lazily, with its vector column added once known.

A table is created on its first write. If the embedding dimension is known by then, the table gets
a nullable `vector` column of `fixed_size_list<float32>[dim]`; if not (no embedder, or the first
embedding call failed), it is created without one and the column is added, all-null, the first
time a vector of a known size arrives. Rows always carry `embedded`: false means "no vector yet",
which the background re-embedder picks up.

Writes (add, upsert, delete, set_vectors) are serialized per table by `lock`, which is cheap at our
write rates. `optimize` does not take it, so a maintenance pass (see `compaction.py`) never delays an
archival insert: Lance commits optimistically and rebases an append onto a compaction;
the idempotent writes (upsert, delete, set_vectors) are retried once if a commit still conflicts.
Reads never take the lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from memory.longterm import compaction
from memory.longterm.lancedb_loader import FTS, BTree

log = logging.getLogger("memproxy.longterm")

VECTOR = "vector"


class MemoryTable:
    """A lazily created table; `base_schema` lists every column except `vector`."""

    def __init__(self, db: Any, name: str, base_schema: pa.Schema) -> None:
        self.db = db
        self.name = name
        self.base_schema = base_schema
        self.table: Any = None
        self.dim: int | None = None
        self.lock = asyncio.Lock()
        self._optimizing = asyncio.Lock()  # one compaction at a time; writers do not wait for it
        self.writes_since_optimize = 0
        self.rows_since_optimize = 0  # rows added or replaced since the last pass
        self.last_optimize = time.monotonic()
        self.last_write = 0.0

    @property
    def exists(self) -> bool:
        return self.table is not None

    @property
    def schema(self) -> pa.Schema:
        if self.dim is None:
            return self.base_schema
        return self.base_schema.append(pa.field(VECTOR, pa.list_(pa.float32(), self.dim), nullable=True))

    async def open_existing(self, names: set[str]) -> None:
        """Attach to the table if it is on disk, learn its vector size, and make sure indexes exist."""
        if self.name not in names:
            return
        self.table = await self.db.open_table(self.name)
        schema = await self.table.schema()
        if VECTOR in schema.names:
            self.dim = schema.field(VECTOR).type.list_size
        await self._ensure_indexes()

    async def reopen(self, db: Any) -> None:
        """Attach to a fresh connection `db`, between writes and compactions; reads in flight finish on the old one."""
        async with self.lock, self._optimizing:
            self.db = db
            if self.table is not None:
                self.table = await db.open_table(self.name)

    async def ensure(self, dim: int | None) -> None:
        """Create the table, or add its vector column, so rows with `dim`-sized vectors fit. Call under lock."""
        if self.table is None:
            self.dim = dim
            self.table = await self.db.create_table(self.name, schema=self.schema, exist_ok=True)
            await self._ensure_indexes()
        elif dim is not None and self.dim is None:
            column = pa.field(VECTOR, pa.list_(pa.float32(), dim), nullable=True)
            await _retry_once(lambda: self.table.add_columns(column))
            self.dim = dim

    async def _ensure_indexes(self) -> None:
        existing = {tuple(index.columns) for index in await self.table.list_indices()}
        # The FTS index must exist before any text query; rows added later are scanned until optimize folds them in.
        if ("text",) not in existing:
            await self.table.create_index("text", config=FTS(), replace=True)
        # Every query is scoped by agent_id, so a scalar index on it pays for itself.
        if ("agent_id",) not in existing:
            await self.table.create_index("agent_id", config=BTree(), replace=True)

    def arrow(self, rows: list[dict[str, Any]]) -> pa.Table:
        """Rows as an Arrow table in this table's schema (vectors must match `dim` or be None)."""
        columns = {field.name: [row.get(field.name) for row in rows] for field in self.schema}
        return pa.Table.from_pydict(columns, schema=self.schema)

    async def write(self, rows: list[dict[str, Any]], vectors: list[list[float]] | None, *, upsert: bool) -> bool:
        """Store rows with their vectors (or none); False if the vectors did not fit and were dropped."""
        dim = len(vectors[0]) if vectors else None
        async with self.lock:
            await self.ensure(dim)
            fits = vectors is not None and self.dim == dim
            for i, row in enumerate(rows):
                row["embedded"] = fits
                row[VECTOR] = vectors[i] if fits and vectors is not None else None
            await (self.upsert(rows) if upsert else self.add(rows))
        return fits or vectors is None

    async def add(self, rows: list[dict[str, Any]]) -> None:
        """Append rows. Call under lock, after `ensure`."""
        await self.table.add(self.arrow(rows))
        self._wrote(len(rows))

    async def upsert(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows, replacing any row with the same id. Call under lock, after `ensure`."""
        data = self.arrow(rows)

        async def attempt() -> None:
            builder = self.table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
            await builder.execute(data)

        await _retry_once(attempt)
        self._wrote(len(rows))

    async def set_vectors(self, ids: list[str], texts: list[str], vectors: list[list[float]]) -> None:
        """Store vectors for existing rows whose text is still what was embedded. Call under lock."""
        source = pa.table(
            {
                "id": pa.array(ids, pa.string()),
                "text": pa.array(texts, pa.string()),
                "embedded": pa.array([True] * len(ids), pa.bool_()),
                VECTOR: pa.array(vectors, pa.list_(pa.float32(), self.dim)),
            }
        )

        async def attempt() -> None:
            # A row rewritten while we were embedding keeps its newer text and stays pending.
            builder = self.table.merge_insert("id").when_matched_update_all(where="target.text = source.text")
            await builder.execute(source)

        await _retry_once(attempt)
        self._wrote(0, len(ids))

    async def delete(self, where: str) -> None:
        """Delete matching rows. Call under lock."""
        await _retry_once(lambda: self.table.delete(where))
        self._wrote(0)

    def _wrote(self, added: int, changed: int = 0) -> None:
        self.writes_since_optimize += 1
        self.rows_since_optimize += added + changed
        self.last_write = time.monotonic()

    async def optimize(self) -> bool:
        """Compact new fragments, bring the FTS and scalar indexes up to date, drop old versions (`compaction.py`).

        Returns False when a concurrent delete or update won the commit race; the caller retries later.
        """
        if self.table is None:
            return True
        async with self._optimizing:
            started = time.perf_counter()
            writes, rows = self.writes_since_optimize, self.rows_since_optimize
            try:
                await compaction.run_pass(await self.table.uri())
            except (OSError, RuntimeError) as exc:
                if "conflict" not in str(exc).lower():
                    raise
                log.debug("optimizing %s yielded to a concurrent write", self.name)
                return False
            finally:
                # The pass committed outside this handle: move it to the new version (a write would too).
                await self.table.checkout_latest()
            # Writes that landed during the pass are still owed one.
            self.writes_since_optimize -= writes
            self.rows_since_optimize -= rows
            self.last_optimize = time.monotonic()
        log.debug("optimized %s in %.0f ms", self.name, (time.perf_counter() - started) * 1000)
        return True

    async def rows(
        self, where: str, columns: list[str], *, limit: int | None = None, order: list[Any] | None = None
    ) -> list[dict[str, Any]]:
        """Plain filtered scan."""
        if self.table is None:
            return []
        query = self.table.query().where(where).select(columns)
        if order:
            query = query.order_by(order)
        if limit is not None:
            query = query.limit(limit)
        return (await query.to_arrow()).to_pylist()

    async def column_batches(self, where: str, column: str) -> AsyncIterator[list[Any]]:
        """The distinct values of one column of the matching rows, a streamed batch at a time."""
        if self.table is None:
            return
        reader = await self.table.query().where(where).select([column]).to_batches()
        async for batch in reader:
            yield pc.unique(batch.column(0)).to_pylist()

    async def count(self, where: str) -> int:
        if self.table is None:
            return 0
        return await self.table.count_rows(where)


async def _retry_once(write: Callable[[], Awaitable[Any]]) -> None:
    try:
        await write()
    except (RuntimeError, OSError) as exc:
        log.info("LanceDB write failed (%r); retrying once", exc)
        await write()
