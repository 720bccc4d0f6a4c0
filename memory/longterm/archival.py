"""Archival passages on LanceDB: the passage half of `LanceLongTermMemory` (the recall half is in index.py).

A mixin: the table, the shared write path and the embedder live on the class that mixes it in, which
declares them below. `passage_tags` and `count_passages` are cached per agent, since the prompt compiler
asks every turn; every passage write drops the agent's entry.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from memory.longterm import portable, sql
from memory.longterm.lancedb_loader import ColumnOrdering
from memory.longterm.records import Passage, PassageWithVector, SearchHit, vector_groups
from memory.longterm.schema import PASSAGE_COLUMNS, as_utc, passage_from_row, passage_row
from memory.longterm.search import search_table
from memory.longterm.tables import MemoryTable
from memory.longterm.timefilter import TimeBound, parse_range
from memory.models import new_id

STATS_CACHE_SIZE = 10_000


class ArchivalPassages:
    """Passage storage, listing and search; mixed into `LanceLongTermMemory`."""

    write_embed_timeout: float
    _stats: dict[str, tuple[int, list[str]]]
    _passage_writes: int  # bumps on every passage write; a stats read spanning one is not cached

    @property
    def _passages(self) -> MemoryTable:
        raise NotImplementedError

    async def _store(
        self, table: MemoryTable, rows: list[dict[str, Any]], vectors: list[list[float]] | None, *, upsert: bool
    ) -> None:
        raise NotImplementedError

    async def _embed_for_write(self, texts: list[str], timeout: float) -> list[list[float]] | None:
        raise NotImplementedError

    async def _query_vector(self, table: MemoryTable, query: str) -> list[float] | None:
        raise NotImplementedError

    async def add_passages(
        self,
        agent_id: str,
        items: list[tuple[str, list[str]]],
        created_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[Passage]:
        """Store passages durably (searchable on return); returns them with their new ids."""
        sql.check_id(agent_id, "agent_id")
        when = as_utc(created_at) if created_at is not None else datetime.now(timezone.utc)
        passages = [
            Passage(new_id("passage"), agent_id, str(text or ""), _unique(tags), when, dict(metadata or {}))
            for text, tags in items
        ]
        if not passages:
            return []
        vectors = await self._embed_for_write([p.text for p in passages], self.write_embed_timeout)
        rows = [passage_row(p) for p in passages]
        await self._store(self._passages, rows, vectors, upsert=False)
        self._passage_writes += 1
        self._stats.pop(agent_id, None)
        return passages

    async def get_passage(self, agent_id: str, passage_id: str) -> Passage | None:
        where = sql.all_of(sql.agent_scope(agent_id), f"id = {sql.quote(sql.check_id(passage_id, 'passage_id'))}")
        rows = await self._passages.rows(where, PASSAGE_COLUMNS, limit=1)
        return passage_from_row(rows[0]) if rows else None

    async def list_passages(
        self,
        agent_id: str,
        after: str | None = None,
        before: str | None = None,
        limit: int | None = 100,
        search: str | None = None,
        ascending: bool = True,
    ) -> list[Passage]:
        """Passages by creation time. `after`/`before` are passage-id cursors in the listing's order;
        with only `before`, the page is the `limit` passages just before it. An unknown cursor gives []."""
        clauses = [sql.agent_scope(agent_id)]
        if search:
            clauses.append(sql.contains_text(search))
        for cursor, is_after in ((after, True), (before, False)):
            if cursor:
                anchor = await self.get_passage(agent_id, cursor)
                if anchor is None or anchor.created_at is None:  # stored passages always have a time
                    return []
                # In descending listings "after" means older.
                later = sql.after_row if is_after == ascending else sql.before_row
                clauses.append(later(anchor.created_at, anchor.id))
        # Paging backwards from `before` reads from the cursor outwards, then restores the order.
        reverse = bool(before) and not after
        forward = ascending != reverse
        order = [ColumnOrdering(column_name=c, ascending=forward) for c in ("created_at", "id")]
        cap = None if limit is None else max(0, min(limit, 100_000))
        rows = await self._passages.rows(sql.all_of(*clauses), PASSAGE_COLUMNS, limit=cap, order=order)
        if reverse:
            rows.reverse()
        return [passage_from_row(row) for row in rows]

    async def delete_passage(self, agent_id: str, passage_id: str) -> bool:
        where = sql.all_of(sql.agent_scope(agent_id), f"id = {sql.quote(sql.check_id(passage_id, 'passage_id'))}")
        table = self._passages
        async with table.lock:
            if await table.count(where) == 0:
                return False
            await table.delete(where)
        self._passage_writes += 1
        self._stats.pop(agent_id, None)
        return True

    async def count_passages(self, agent_id: str) -> int:
        return (await self._passage_stats(agent_id))[0]

    async def passage_tags(self, agent_id: str) -> list[str]:
        """Sorted unique tags of the agent's passages (cached; the prompt compiler asks every turn)."""
        return list((await self._passage_stats(agent_id))[1])

    async def passage_figures(self, agent_id: str) -> tuple[int, list[str]]:
        count, tags = await self._passage_stats(agent_id)
        return count, list(tags)

    async def _passage_stats(self, agent_id: str) -> tuple[int, list[str]]:
        cached = self._stats.get(agent_id)
        if cached is not None:
            return cached
        writes = self._passage_writes
        rows = await self._passages.rows(sql.agent_scope(agent_id), ["tags"])
        stats = (len(rows), sorted({tag for row in rows for tag in row["tags"] or []}))
        if writes == self._passage_writes:
            if len(self._stats) >= STATS_CACHE_SIZE:
                self._stats.clear()
            self._stats[agent_id] = stats
        return stats

    async def passage_ids_all(self) -> set[str]:
        return {row["id"] for row in await self._passages.rows("true", ["id"])}

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
        """Hybrid (or vector / fts) search of one agent's passages; dates are inclusive."""
        lower, upper = parse_range(start, end, tz)
        where = sql.all_of(
            sql.agent_scope(agent_id), sql.tags_filter(tags, tag_match_mode), sql.time_filter(lower, upper)
        )
        return await search_table(
            self._passages, where, query, top_k, mode, PASSAGE_COLUMNS, passage_from_row, self._query_vector
        )


    # --- export / import (memory.portable) -----------------------------------------------------
    async def export_passages(self, *, after: str | None = None, limit: int = 1000) -> list[PassageWithVector]:
        return await portable.lance_passage_page(self._passages, after, limit)

    async def existing_passage_ids(self, ids: list[str]) -> set[str]:
        return await portable.lance_present_ids(self._passages, list(ids))

    async def put_passages(self, items: list[PassageWithVector]) -> None:
        for passages, vectors in vector_groups(items):
            await self._store(self._passages, portable.lance_rows(passages), vectors, upsert=False)
        self._passage_writes += 1
        self._stats.clear()


def _unique(tags: list[str] | None) -> list[str]:
    return list(dict.fromkeys(str(tag) for tag in tags or []))
