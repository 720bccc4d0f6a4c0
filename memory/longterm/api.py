"""The long-term memory interface every backend implements: archival passages, the recall index, hybrid search.

LanceDB (`memory.longterm.index.LanceLongTermMemory`) implements it today. The proxy and the tools
only name this type. Every agent-scoped method sees one agent's data only; search hits carry
`rrf_score`, `vector_rank` and `fts_rank` (reciprocal-rank fusion of a vector and a full-text search,
full-text only without an embedder). Id scans are keyset pages in byte order of the id, like `Store`'s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from memory.longterm.records import Passage, PassageWithVector, RecallRecord, SearchHit
from memory.longterm.timefilter import TimeBound

ID_PAGE_SIZE = 50_000  # as memory.store.ID_PAGE_SIZE: each page may cost a scan


class LongTermMemory(ABC):
    """Archival passages and the searchable copy of every agent's messages."""

    # True when the recall rows can live in the store's database, written by the store in the messages'
    # transaction (`Store.index_recall_in_commit`): nothing to repair after a crash. `enqueue_messages`
    # then only has to add what the store cannot compute (vectors).
    indexes_in_store_commit: bool = False

    @property
    def vector_search(self) -> bool:
        """Whether searches can rank by vector: an embedder, and a database that can hold vectors."""
        return getattr(self, "embedder", None) is not None

    # --- lifecycle --------------------------------------------------------------------------
    @abstractmethod
    async def open(self) -> None:
        """Connect and create or upgrade what the backend needs."""

    @abstractmethod
    def start_background(self) -> None:
        """Start background work (write-behind, index maintenance) on the running loop; may do nothing."""

    @abstractmethod
    async def flush(self) -> None:
        """Return once every message enqueued before the call is searchable."""

    @abstractmethod
    async def close(self) -> None:
        """Write what is queued, stop background work, release the database."""

    # --- archival passages ------------------------------------------------------------------
    @abstractmethod
    async def add_passages(
        self,
        agent_id: str,
        items: list[tuple[str, list[str]]],
        created_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[Passage]:
        """Store (text, tags) passages durably, searchable on return; returns them with their new ids."""

    @abstractmethod
    async def get_passage(self, agent_id: str, passage_id: str) -> Passage | None:
        """One of the agent's passages, or None."""

    @abstractmethod
    async def list_passages(
        self,
        agent_id: str,
        after: str | None = None,
        before: str | None = None,
        limit: int | None = 100,
        search: str | None = None,
        ascending: bool = True,
    ) -> list[Passage]:
        """Passages by (created_at, id); cursors are passage ids in the listing's order, unknown ones give []."""

    @abstractmethod
    async def delete_passage(self, agent_id: str, passage_id: str) -> bool:
        """Delete one of the agent's passages; False if it has no such passage."""

    @abstractmethod
    async def count_passages(self, agent_id: str) -> int:
        """How many passages the agent has."""

    @abstractmethod
    async def passage_tags(self, agent_id: str) -> list[str]:
        """Sorted unique tags of the agent's passages (asked every turn: keep it cheap)."""

    @abstractmethod
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
        """Hybrid (or vector / fts) search of the agent's passages; dates inclusive, read in `tz`."""

    # --- recall index -----------------------------------------------------------------------
    @abstractmethod
    def enqueue_messages(self, records: list[RecallRecord], *, new: bool = False) -> None:
        """Index messages without waiting; an id indexed again replaces its row (`new` promises it never was)."""

    @abstractmethod
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
        """Hybrid (or vector / fts) search of the agent's messages; dates inclusive, read in `tz`."""

    @abstractmethod
    async def recall_ids(self, agent_id: str) -> set[str]:
        """Ids of the agent's indexed messages, queued ones included."""

    @abstractmethod
    async def recall_ids_all(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        """One page of every agent's indexed message ids, ascending, greater than `after`."""

    @abstractmethod
    async def delete_recall(self, ids: list[str] | set[str]) -> None:
        """Remove messages from the recall index, queued ones included."""

    # --- agents -----------------------------------------------------------------------------
    @abstractmethod
    async def delete_agent(self, agent_id: str) -> None:
        """Drop every passage and recall row of the agent."""

    @abstractmethod
    async def agent_ids(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        """One page of the ids of agents with any passage or recall row, ascending, greater than `after`."""

    # --- export / import (memory.portable) ----------------------------------------------------
    @abstractmethod
    async def export_passages(self, *, after: str | None = None, limit: int = 1000) -> list[PassageWithVector]:
        """One keyset page of every agent's passages with their vectors, ascending by id, ids greater than `after`."""

    @abstractmethod
    async def existing_passage_ids(self, ids: list[str]) -> set[str]:
        """Which of `ids` are stored passages (of any agent)."""

    @abstractmethod
    async def put_passages(self, items: list[PassageWithVector]) -> None:
        """Insert passages as given (ids, dates, vectors kept; a vector that does not fit is re-embedded later)."""
