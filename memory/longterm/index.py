"""Long-term memory: archival passages and the recall index of every message, on LanceDB.

Two tables live in one LanceDB directory: `passages` (archival memory) and `recall` (a searchable
copy of each conversation message, keyed by message id). Search is hybrid: a cosine vector search
and LanceDB's native BM25 full-text search, each prefiltered by agent and the caller's filters, fused
by reciprocal rank. Without an embedder, or when embedding fails, search is full-text only.

Lazy dimension: the vector size is learned from the embedder's first answer, so tables are created
at their first write, with a vector column only if the size is known by then; otherwise the column
is added later (see `tables.py`). A row whose embedding failed is stored anyway with
`embedded = false` and gets its vector from `embed_pending`, which the background loop runs.

Freshness: the FTS index is created with the table, and LanceDB's full-text search also scans rows
the index has not absorbed yet (checked in the tests), so a row is searchable as soon as its write
commits. The background loop compacts fragments and folds new rows into the indexes (`optimize`)
once the rows written since the last pass reach a share of the table (see `maintenance.py`), never
per write. Recall writes go through a write-behind queue flushed within about a second.

Everything is async on LanceDB's async API (its work runs on LanceDB's own threads); the event
loop only converts small Arrow results.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from memory.longterm import maintenance, sql
from memory.longterm.archival import ArchivalPassages
from memory.longterm.api import ID_PAGE_SIZE, LongTermMemory
from memory.longterm.embedder import Embedder, RareWarning, embed_or_none
from memory.longterm.lancedb_loader import ColumnOrdering, lancedb
from memory.longterm.recall_queue import RecallQueue
from memory.longterm.records import RecallRecord, SearchHit
from memory.longterm.reembed import Reembedder
from memory.longterm.schema import PASSAGE_SCHEMA, RECALL_COLUMNS, RECALL_SCHEMA, recall_from_row, recall_row
from memory.longterm.search import search_table
from memory.longterm.tables import MemoryTable
from memory.longterm.timefilter import TimeBound, parse_range

log = logging.getLogger("memproxy.longterm")


# Most rows one recall write takes. A LanceDB write (a commit, a fragment for the index to fold in) costs about the
# same whatever its size, so without an embedder a drain writes everything a busy half-second queued at once (at
# 1,200 turns/s ~1,200 messages: one write, not five). With one, a batch's texts are embedded within one short
# timeout (`recall_embed_timeout`), so batches stay small enough for an embedding call to finish in it.
RECALL_BATCH_TEXT = 2048
RECALL_BATCH_EMBEDDED = 256


class LanceLongTermMemory(ArchivalPassages, LongTermMemory):
    """Archival passages and the recall index for every agent, in one LanceDB directory."""

    def __init__(
        self,
        path: str,
        embedder: Embedder | None = None,
        *,
        recall_interval: float = 0.5,
        optimize_interval: float = 5.0,
        reembed_interval: float = 30.0,
        write_embed_timeout: float = 10.0,
        recall_embed_timeout: float = 0.75,
        query_embed_timeout: float = 5.0,
        cache_bytes: int | None = None,
        reopen_interval: float = 10.0,
        recall_batch: int | None = None,
    ) -> None:
        self.path = path
        self.embedder = embedder
        self.optimize_interval = optimize_interval
        self.reembed_interval = reembed_interval
        self.write_embed_timeout = write_embed_timeout
        self.recall_embed_timeout = recall_embed_timeout  # short: a slow embedder must not delay recall
        self.query_embed_timeout = query_embed_timeout
        self._cache_bytes = cache_bytes
        self._session = maintenance.new_session(cache_bytes)
        self.reopen_interval = reopen_interval
        self.last_reopen = time.monotonic()
        self._db: Any = None
        self._passages_table: MemoryTable | None = None  # None until open()
        self._recall_table: MemoryTable | None = None
        if recall_batch is None:
            recall_batch = RECALL_BATCH_EMBEDDED if embedder is not None else RECALL_BATCH_TEXT
        self._queue = RecallQueue(self._write_recall, interval=recall_interval, max_batch=recall_batch)
        self._replace_ids: set[str] = set()  # queued ids that may already be in the table
        self._tasks: list[asyncio.Task[None]] = []
        self.maybe_unembedded = embedder is not None  # rows from an earlier run may still lack vectors
        self._warn = RareWarning(log)
        self._reembedder = Reembedder(embedder, write_embed_timeout, self._warn) if embedder is not None else None
        self._stats: dict[str, tuple[int, list[str]]] = {}
        self._passage_writes = 0  # bumps on every passage write; a stats read spanning one is not cached

    async def reopen(self) -> None:
        """Swap in a fresh session and connection. The session keeps a reader (an open file and its buffers) of
        every full-text index version a compaction replaced, past the cache's size accounting: they go only
        with the session. Costs one cold index load on the next search."""
        session = maintenance.new_session(self._cache_bytes)
        db = await lancedb.connect_async(self.path, session=session)
        for table in (self._passages_table, self._recall_table):
            if table is not None:
                await table.reopen(db)
        # Not closed: reads still running on the old connection finish, then it is freed with its last reference.
        self._db, self._session = db, session
        self.last_reopen = time.monotonic()

    @property
    def tables(self) -> list[MemoryTable]:
        """The tables open so far (both once `open()` ran)."""
        return [t for t in (self._passages_table, self._recall_table) if t is not None]

    @property
    def _passages(self) -> MemoryTable:
        if self._passages_table is None:
            raise RuntimeError("long-term memory used before open()")
        return self._passages_table

    @property
    def _recall(self) -> MemoryTable:
        if self._recall_table is None:
            raise RuntimeError("long-term memory used before open()")
        return self._recall_table

    @property
    def cache_bytes(self) -> int:
        """What LanceDB's index and metadata caches hold now."""
        return int(self._session.size_bytes)

    async def memory_figures(self) -> dict[str, float]:
        """LanceDB's cache (MB), queued recall rows and each table's version (for the memory report)."""
        figures: dict[str, float] = {"lance_cache": self.cache_bytes / 2**20, "recall_queue": len(self._queue)}
        for table in (self._passages_table, self._recall_table):
            if table is not None and table.exists:
                figures[f"{table.name}_version"] = await table.table.version()
        return figures

    # --- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        self._db = await lancedb.connect_async(self.path, session=self._session)
        names = set((await self._db.list_tables()).tables)
        self._passages_table = MemoryTable(self._db, "passages", PASSAGE_SCHEMA)
        self._recall_table = MemoryTable(self._db, "recall", RECALL_SCHEMA)
        for table in (self._passages, self._recall):
            await table.open_existing(names)

    def start_background(self) -> None:
        """Start the recall writer and the maintenance loop (optimize, re-embed) on the running loop."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._queue.run(), name="longterm-recall-writer"),
            loop.create_task(maintenance.maintain(self), name="longterm-maintenance"),
        ]

    async def close(self) -> None:
        """Write what is queued, stop the background tasks, release the database."""
        if self._db is None:
            return
        try:
            await self.flush()
        except Exception:
            log.exception("could not write %d queued recall messages at shutdown", len(self._queue))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._db.close()
        self._db = None

    async def flush(self) -> None:
        """Return once every message enqueued before the call is written."""
        await self._queue.drain()

    async def optimize(self) -> None:
        """Compact both tables and fold new rows into their indexes (the background loop does this when due)."""
        await maintenance.optimize_now([self._passages, self._recall])

    # --- recall -----------------------------------------------------------------------------
    def enqueue_messages(self, records: list[RecallRecord], *, new: bool = False) -> None:
        """Queue messages for the recall index without waiting; re-enqueueing an id replaces its row.

        `new=True` promises the ids were never indexed: they are appended, which costs far less than
        the merge a replacement needs (the turn loop indexes each message once, after its commit).
        """
        for record in records:
            sql.check_id(record.id, "message id")
            sql.check_id(record.agent_id, "agent_id")
        if not new:
            self._replace_ids.update(record.id for record in records)
        self._queue.put(list(records))

    async def search_recall(
        self,
        agent_id: str,
        query: str,
        *,
        roles: list[str] | None = None,
        limit: int = 10,
        start: TimeBound = None,
        end: TimeBound = None,
        mode: str = "hybrid",
        tz: str = "UTC",
    ) -> list[SearchHit]:
        """Hybrid (or vector / fts) search of one agent's messages; dates are inclusive."""
        lower, upper = parse_range(start, end, tz)
        where = sql.all_of(sql.agent_scope(agent_id), sql.roles_filter(roles), sql.time_filter(lower, upper))
        return await search_table(
            self._recall, where, query, limit, mode, RECALL_COLUMNS, recall_from_row, self._query_vector
        )

    async def recall_ids(self, agent_id: str) -> set[str]:
        """Ids of the agent's messages in the recall index, queued ones included."""
        rows = await self._recall.rows(sql.agent_scope(agent_id), ["id"])
        return {row["id"] for row in rows} | self._queue.pending_ids(agent_id)

    async def recall_ids_all(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        where = "true" if after is None else f"id > {sql.quote(after)}"
        order = [ColumnOrdering(column_name="id", ascending=True)]
        return [row["id"] for row in await self._recall.rows(where, ["id"], limit=limit, order=order)]

    async def delete_recall(self, ids: list[str] | set[str]) -> None:
        """Remove messages from the recall index (and from the queue, so they are not written later)."""
        doomed = set(ids)
        if not doomed:
            return
        async with self._queue.lock:
            self._queue.discard(lambda record: record.id not in doomed)
            table = self._recall
            if not table.exists:
                return
            ordered = sorted(doomed)
            async with table.lock:
                for start in range(0, len(ordered), 500):
                    await table.delete(sql.id_in(ordered[start : start + 500]))

    async def delete_agent(self, agent_id: str) -> None:
        """Drop every passage and recall row of the agent, queued messages included."""
        scope = sql.agent_scope(agent_id)
        async with self._queue.lock:
            self._queue.discard(lambda record: record.agent_id != agent_id)
            for table in (self._passages, self._recall):
                if table.exists:
                    async with table.lock:
                        await table.delete(scope)
        self._passage_writes += 1
        self._stats.pop(agent_id, None)

    async def agent_ids(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        """Agents that have any passage or recall row (to find orphans of deleted agents)."""
        where = "true" if after is None else f"agent_id > {sql.quote(after)}"
        found: set[str] = set()
        for table in (self._passages, self._recall):
            async for ids in table.column_batches(where, "agent_id"):
                found.update(ids)
                if len(found) > 2 * limit:  # keep only what can still be in the page
                    found = set(sorted(found)[:limit])
        return sorted(found)[:limit]

    async def _write_recall(self, batch: list[RecallRecord]) -> None:
        latest = {record.id: record for record in batch}  # the last version of a message wins
        records = list(latest.values())
        replace = len(latest) < len(batch) or any(r.id in self._replace_ids for r in records)
        vectors = await self._embed_for_write([r.text for r in records], self.recall_embed_timeout)
        rows = [recall_row(r) for r in records]
        await self._store(self._recall, rows, vectors, upsert=replace)
        if replace:
            self._replace_ids.difference_update(latest)

    # --- shared write / search / embedding --------------------------------------------------
    async def _store(
        self, table: MemoryTable, rows: list[dict[str, Any]], vectors: list[list[float]] | None, *, upsert: bool
    ) -> None:
        if not await table.write(rows, vectors, upsert=upsert) and vectors is not None:
            self._warn(f"{table.name}: embeddings have {len(vectors[0])} dimensions but the table has {table.dim}")
        if self.embedder is not None and (vectors is None or table.dim != len(vectors[0])):
            self.maybe_unembedded = True

    async def _embed_for_write(self, texts: list[str], timeout: float) -> list[list[float]] | None:
        """Vectors for `texts`, or None (rows are then stored for full-text search and re-embedded later)."""
        if self.embedder is None or not texts:
            return None
        return await embed_or_none(self.embedder, texts, timeout, self._warn)

    async def _query_vector(self, table: MemoryTable, query: str) -> list[float] | None:
        if table.dim is None:
            return None
        vectors = await self._embed_for_write([query], self.query_embed_timeout)
        return vectors[0] if vectors is not None and len(vectors[0]) == table.dim else None

    async def embed_pending(self) -> int:
        """Give vectors to rows stored without one; returns how many were embedded."""
        if self._reembedder is None:
            return 0
        # Cleared first: a write failing while this pass runs sets it again.
        self.maybe_unembedded = False
        done, finished = await self._reembedder.run([self._passages, self._recall])
        if not finished:
            self.maybe_unembedded = True
        return done
