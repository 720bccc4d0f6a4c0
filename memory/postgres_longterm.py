"""Long-term memory in PostgreSQL: archival passages and the recall index, in the store's database.

Two tables beside the messages (see postgres_migrations): `passages`, and `recall`, the searchable
copy of each message worth finding (keyed by message id). Each row's tsvector is a generated column,
so full-text search sees a row the moment its write commits; with pgvector, an `embedding` column
serves cosine search through per-size HNSW indexes. Without pgvector, search is full-text only.

Recall rows are written by PostgresStore in the messages' own transaction (`indexes_in_store_commit`,
wired by memory.recall.live_indexer), so a committed turn is searchable by full text at once and a
crash leaves nothing to repair. Vectors need the embedder, which a transaction must not wait for: with
one, `enqueue_messages` upserts the rows again with their vectors through the write-behind queue (one
INSERT per batch), as it also does for rows start-up reconciliation finds missing. A row whose
embedding failed keeps no vector and is re-embedded by the background loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from typing import Any

import asyncpg

from memory.longterm import sql as ids
from memory.longterm.api import ID_PAGE_SIZE, LongTermMemory
from memory.longterm.embedder import Embedder, RareWarning
from memory.longterm.recall_queue import RecallQueue
from memory.longterm.records import Passage, PassageWithVector, RecallRecord, SearchHit, vector_groups
from memory.longterm.timefilter import TimeBound, parse_range
from memory.models import new_id
from memory.postgres_migrations import apply_migrations, enable_vectors
from memory.postgres_search import Where, search, time_range
from memory.postgres_sql import CONNECT_TIMEOUT, keep_session
from memory.postgres_vectors import PostgresVectors

log = logging.getLogger("memproxy.longterm")

_PASSAGE_COLUMNS = "id, agent_id, text, tags, created_at, metadata"
_RECALL_COLUMNS = "id, agent_id, role, text, created_at"


class PostgresLongTermMemory(PostgresVectors, LongTermMemory):
    """Archival passages and the recall index for every agent, in PostgreSQL."""

    indexes_in_store_commit = True  # the recall table is in the store's database

    def __init__(
        self,
        dsn: str,
        embedder: Embedder | None = None,
        *,
        recall_interval: float = 0.5,
        reembed_interval: float = 30.0,
        write_embed_timeout: float = 10.0,
        recall_embed_timeout: float = 0.75,
        query_embed_timeout: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.embedder = embedder
        self.reembed_interval = reembed_interval
        self.write_embed_timeout = write_embed_timeout
        self.recall_embed_timeout = recall_embed_timeout  # short: a slow embedder must not delay recall
        self.query_embed_timeout = query_embed_timeout
        self.vectors_available = False  # pgvector could be created (known after open)
        self._pool: asyncpg.Pool | None = None
        self._queue = RecallQueue(self._write_recall, interval=recall_interval)
        self._tasks: list[asyncio.Task[None]] = []
        self._indexed_dims: set[tuple[str, int]] = set()
        self._maybe_unembedded = embedder is not None
        self._warn = RareWarning(log)

    # --- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=5, reset=keep_session, timeout=CONNECT_TIMEOUT)
        try:
            async with pool.acquire() as con:
                await apply_migrations(con)
                self.vectors_available = await enable_vectors(con)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    def start_background(self) -> None:
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._queue.run(), name="longterm-recall-writer")]
        if self.vector_search:
            self._tasks.append(loop.create_task(self._reembed_loop(), name="longterm-reembed"))

    async def flush(self) -> None:
        await self._queue.drain()

    async def close(self) -> None:
        pool = self._pool
        if pool is None:
            return
        try:
            await self.flush()
        except Exception:
            log.exception("could not write %d queued recall messages at shutdown", len(self._queue))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._pool = None
        await pool.close()


    # --- passages ---------------------------------------------------------------------------
    async def add_passages(
        self,
        agent_id: str,
        items: list[tuple[str, list[str]]],
        created_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[Passage]:
        ids.check_id(agent_id, "agent_id")
        when = _utc(created_at) if created_at is not None else datetime.now(timezone.utc)
        passages = [
            Passage(new_id("passage"), agent_id, str(text or ""), list(dict.fromkeys(str(t) for t in tags or [])),
                    when, dict(metadata or {}))
            for text, tags in items
        ]
        if not passages:
            return []
        vectors = await self._embed([p.text for p in passages], self.write_embed_timeout)
        await self._insert_passages(passages, [p.created_at for p in passages], vectors)
        return passages

    async def get_passage(self, agent_id: str, passage_id: str) -> Passage | None:
        ids.check_id(passage_id, "passage_id")
        row = await self.pool.fetchrow(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages WHERE agent_id = $1 AND id = $2", agent_id, passage_id)
        return None if row is None else _passage(dict(row))

    async def list_passages(
        self,
        agent_id: str,
        after: str | None = None,
        before: str | None = None,
        limit: int | None = 100,
        search: str | None = None,
        ascending: bool = True,
    ) -> list[Passage]:
        where = Where().add("agent_id = {}", agent_id)
        if search:
            where.add("strpos(lower(text), {}) > 0", search.lower())
        for cursor, is_after in ((after, True), (before, False)):
            if cursor:
                anchor = await self.get_passage(agent_id, cursor)
                if anchor is None:
                    return []
                # In descending listings "after" means older.
                op = ">" if is_after == ascending else "<"
                where.add(f"(created_at, id) {op} ({{}}, {{}})", anchor.created_at, anchor.id)
        # Paging backwards from `before` reads from the cursor outwards, then restores the order.
        reverse = bool(before) and not after
        order = "ASC" if ascending != reverse else "DESC"
        cap = "ALL" if limit is None else str(max(0, min(int(limit), 100_000)))
        rows = await self.pool.fetch(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages WHERE {where.sql}"
            f" ORDER BY created_at {order}, id {order} LIMIT {cap}", *where.args)
        passages = [_passage(dict(row)) for row in rows]
        return passages[::-1] if reverse else passages

    async def delete_passage(self, agent_id: str, passage_id: str) -> bool:
        ids.check_id(passage_id, "passage_id")
        done = await self.pool.execute("DELETE FROM passages WHERE agent_id = $1 AND id = $2", agent_id, passage_id)
        return done != "DELETE 0"

    async def count_passages(self, agent_id: str) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM passages WHERE agent_id = $1", agent_id))

    async def passage_tags(self, agent_id: str) -> list[str]:
        rows = await self.pool.fetch(
            'SELECT DISTINCT tag COLLATE "C" FROM passages, unnest(tags) AS tag WHERE agent_id = $1 ORDER BY 1',
            agent_id)
        return [row[0] for row in rows]

    async def passage_figures(self, agent_id: str) -> tuple[int, list[str]]:
        row = await self.pool.fetchrow(
            'SELECT count(*), ARRAY(SELECT DISTINCT tag COLLATE "C" FROM passages, unnest(tags) AS tag'
            " WHERE agent_id = $1 ORDER BY 1) FROM passages WHERE agent_id = $1", agent_id)
        assert row is not None
        return int(row[0]), list(row[1])

    async def search_passages(
        self,
        agent_id: str,
        query: str,
        *,
        tags: list[str] | None = None,
        tag_match_mode: str = "any",
        top_k: int = 10,
        start: TimeBound = None,
        end: TimeBound = None,
        mode: str = "hybrid",
        tz: str = "UTC",
    ) -> list[SearchHit]:
        lower, upper = parse_range(start, end, tz)
        where = Where().add("agent_id = {}", ids.check_id(agent_id, "agent_id"))
        if tags:
            if tag_match_mode not in ("any", "all"):
                raise ValueError(f"tag_match_mode must be 'any' or 'all', not {tag_match_mode!r}")
            where.add("tags && {}::text[]" if tag_match_mode == "any" else "tags @> {}::text[]",
                      [str(t) for t in tags])
        time_range(where, lower, upper)
        return await search(self.pool, "passages", where, _PASSAGE_COLUMNS, query, top_k, mode, _passage,
                            self._query_vector)

    # --- recall -----------------------------------------------------------------------------
    def enqueue_messages(self, records: list[RecallRecord], *, new: bool = False) -> None:
        for record in records:
            ids.check_id(record.id, "message id")
            ids.check_id(record.agent_id, "agent_id")
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
        lower, upper = parse_range(start, end, tz)
        where = Where().add("agent_id = {}", ids.check_id(agent_id, "agent_id"))
        if roles:
            ids.roles_filter(roles)  # validates, as the LanceDB backend does
            where.add("role = ANY({}::text[])", list(roles))
        time_range(where, lower, upper)
        return await search(self.pool, "recall", where, _RECALL_COLUMNS, query, limit, mode, _recall,
                            self._query_vector)

    async def recall_ids(self, agent_id: str) -> set[str]:
        rows = await self.pool.fetch("SELECT id FROM recall WHERE agent_id = $1", agent_id)
        return {row[0] for row in rows} | self._queue.pending_ids(agent_id)

    async def recall_ids_all(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        rows = await self.pool.fetch("SELECT id FROM recall WHERE id > $1 ORDER BY id LIMIT $2", after or "", limit)
        return [row[0] for row in rows]

    async def delete_recall(self, ids_: list[str] | set[str]) -> None:
        doomed = set(ids_)
        if not doomed:
            return
        async with self._queue.lock:
            self._queue.discard(lambda record: record.id not in doomed)
            await self.pool.execute("DELETE FROM recall WHERE id = ANY($1::text[])", sorted(doomed))

    async def delete_agent(self, agent_id: str) -> None:
        async with self._queue.lock:
            self._queue.discard(lambda record: record.agent_id != agent_id)
            async with self.pool.acquire() as con, con.transaction():
                await con.execute("DELETE FROM passages WHERE agent_id = $1", agent_id)
                await con.execute("DELETE FROM recall WHERE agent_id = $1", agent_id)

    async def agent_ids(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT agent_id FROM (SELECT agent_id FROM passages WHERE agent_id > $1"
            " UNION SELECT agent_id FROM recall WHERE agent_id > $1) AS a ORDER BY agent_id LIMIT $2",
            after or "", limit)
        return [row[0] for row in rows]

    async def _insert_passages(self, passages: list[Passage], created_at: list[datetime | None],
                               vectors: list[list[float]] | None) -> None:
        """Insert passages (new ids only) with their creation times and, when given, their vectors."""
        columns: list[list[Any]] = [[p.id for p in passages], [p.agent_id for p in passages], [p.text for p in passages],
                                    [json.dumps(p.tags) for p in passages], list(created_at),
                                    [json.dumps(p.metadata) for p in passages]]
        await self._insert("passages", "id, agent_id, text, tags, created_at, metadata",
                           "u.id, u.agent_id, u.text, ARRAY(SELECT json_array_elements_text(u.tags::json)),"
                           " u.created_at, u.metadata",
                           "$1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[]",
                           "id, agent_id, text, tags, created_at, metadata", columns, vectors, upsert=False)

    async def _write_recall(self, batch: list[RecallRecord]) -> None:
        records = list({record.id: record for record in batch}.values())  # the last version of a message wins
        vectors = await self._embed([r.text or "" for r in records], self.recall_embed_timeout)
        columns: list[list[Any]] = [[r.id for r in records], [r.agent_id for r in records], [r.role for r in records],
                   [r.text or "" for r in records], [_utc(r.created_at) for r in records]]
        await self._insert("recall", "id, agent_id, role, text, created_at", "u.id, u.agent_id, u.role, u.text,"
                           " u.created_at", "$1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]",
                           "id, agent_id, role, text, created_at", columns, vectors, upsert=True)

    # --- export / import (memory.portable) ----------------------------------------------------
    async def export_passages(self, *, after: str | None = None, limit: int = 1000) -> list[PassageWithVector]:
        vector = ", embedding::text" if self.vectors_available else ", NULL"
        rows = await self.pool.fetch(f"SELECT {_PASSAGE_COLUMNS}{vector} FROM passages WHERE id > $1"
                                     " ORDER BY id LIMIT $2", after or "", int(limit))
        return [(_passage(dict(row)), _parse_vector(row[-1])) for row in rows]

    async def existing_passage_ids(self, ids_: list[str]) -> set[str]:
        if not ids_:
            return set()
        rows = await self.pool.fetch("SELECT id FROM passages WHERE id = ANY($1::text[])", list(ids_))
        return {row[0] for row in rows}

    async def put_passages(self, items: list[PassageWithVector]) -> None:
        for passages, vectors in vector_groups(items):
            for p in passages:
                ids.check_id(p.id, "passage id")
                ids.check_id(p.agent_id, "agent_id")
            await self._insert_passages(
                passages, [_utc(p.created_at or datetime.now(timezone.utc)) for p in passages], vectors)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _passage(row: dict[str, Any]) -> Passage:
    metadata = json.loads(row["metadata"]) if row.get("metadata") else {}
    return Passage(row["id"], row["agent_id"], row["text"] or "", list(row["tags"] or []), row["created_at"], metadata)


def _recall(row: dict[str, Any]) -> RecallRecord:
    return RecallRecord(row["id"], row["agent_id"], row["role"] or "", row["text"] or "", row["created_at"])


def _parse_vector(text: str | None) -> list[float] | None:
    """pgvector's text form `[1,2,3]` as floats."""
    if not text:
        return None
    return [float(v) for v in text.strip("[]").split(",")]
