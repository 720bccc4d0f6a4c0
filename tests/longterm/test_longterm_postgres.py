"""PostgreSQL long-term memory without pgvector (the local server): full-text only, with an embedder too.

The shared behaviour runs on every backend through the `lt` and `lt_text_only` fixtures (conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import asyncpg
import pytest

from memory.longterm import RecallRecord
from memory.models import new_id
from memory.postgres_longterm import PostgresLongTermMemory
from memory.postgres_migrations import MIGRATIONS


@pytest.fixture
async def plain(postgres_schema_url: str, embedder: Any) -> AsyncIterator[PostgresLongTermMemory]:
    memory = PostgresLongTermMemory(postgres_schema_url, embedder)
    await memory.open()
    yield memory
    await memory.close()


async def test_without_pgvector_an_embedder_still_gives_full_text_search(plain: PostgresLongTermMemory,
                                                                       embedder: Any, agent_id: str) -> None:
    assert plain.vectors_available is False and plain.vector_search is False
    [p] = await plain.add_passages(agent_id, [("the lighthouse keeper logs every storm", ["sea"])])
    for mode in ("hybrid", "vector", "fts"):
        hits = await plain.search_passages(agent_id, "storm lighthouse", mode=mode)
        assert [h.record.id for h in hits] == [p.id]
        assert hits[0].search_mode == "fts" and hits[0].vector_rank is None and hits[0].fts_rank == 1
    assert embedder.calls == []  # nothing is embedded when there is nowhere to keep it
    assert await plain.embed_pending() == 0


async def test_full_text_matches_any_word_and_ranks_denser_matches_first(plain: PostgresLongTermMemory,
                                                                          agent_id: str) -> None:
    both, one = await plain.add_passages(agent_id, [("oranges and seville marmalade", []), ("fresh oranges", [])])
    await plain.add_passages(agent_id, [("nothing in common", [])])
    hits = await plain.search_passages(agent_id, "seville oranges", mode="fts")
    assert [h.record.id for h in hits] == [both.id, one.id]
    assert [h.fts_rank for h in hits] == [1, 2] and hits[0].rrf_score > hits[1].rrf_score
    assert await plain.search_passages(agent_id, "!!! ???", mode="fts") == []  # no words: no match, no error


async def test_rows_live_in_the_database_with_a_generated_tsvector(plain: PostgresLongTermMemory,
                                                                   postgres_schema_url: str, agent_id: str) -> None:
    now = datetime.now(timezone.utc)
    plain.enqueue_messages([RecallRecord(new_id("message"), agent_id, "user", "Quarterly Numbers", now)])
    await plain.flush()
    con = await asyncpg.connect(postgres_schema_url)
    try:
        assert await con.fetchval("SELECT tsv::text FROM recall WHERE agent_id = $1", agent_id) == \
            "'numbers':2 'quarterly':1"
        versions = [r[0] for r in await con.fetch("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [version for version, _ in MIGRATIONS]  # every migration, each recorded once
    finally:
        await con.close()
