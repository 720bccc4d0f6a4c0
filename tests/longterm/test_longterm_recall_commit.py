"""Recall rows written in the messages' own transaction (PostgreSQL), and the embedded backend keeping its queue.

`memory.recall.live_indexer` is what the server wires at start: on PostgreSQL the store writes recall rows
in `commit`, so a committed message is searchable at once and a crash leaves no gap to reconcile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pg
import pytest

from memory.duckdb_store import DuckDBStore
from memory.longterm import LanceLongTermMemory, LongTermMemory
from memory.models import Agent, Changes, Message, new_id
from memory.postgres_longterm import PostgresLongTermMemory
from memory.postgres_store import PostgresStore
from memory.recall import live_indexer, reconcile
from memory.store import Conflict

SKIP = frozenset({"memory_insert"})


@pytest.fixture
async def schema_url(postgres_url: str) -> AsyncIterator[str]:
    name, url = await pg.create_schema(postgres_url)
    yield url
    await pg.drop_schema(postgres_url, name)


async def _open(url: str, embedder: Any = None) -> tuple[PostgresStore, PostgresLongTermMemory]:
    store, lt = PostgresStore(url), PostgresLongTermMemory(url, embedder)
    await store.open()
    await lt.open()
    return store, lt


def _turn(agent_id: str, first_seq: int, word: str) -> list[Message]:
    """A turn with every kind of message: what recall holds and what it skips."""
    kinds: list[dict[str, Any]] = [
        {"role": "user", "content": f"tell me about {word}"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                              "function": {"name": "memory_insert", "arguments": "{}"}}]},
        {"role": "tool", "name": "memory_insert", "tool_call_id": "c1", "content": f"echo {word}"},
        {"role": "tool", "name": "weather", "tool_call_id": "c2", "content": f"{word} forecast sunny"},
        {"role": "system", "content": f"summary of {word}"},
        {"role": "assistant", "content": f"here is {word}"},
    ]
    return [Message(id=new_id("message"), agent_id=agent_id, seq=first_seq + i, **kind) for i, kind in enumerate(kinds)]


async def test_a_committed_turn_is_searchable_without_any_flush(schema_url: str) -> None:
    store, lt = await _open(schema_url)
    try:
        assert live_indexer(store, lt, SKIP) is None  # no embedder: nothing is left to do after the commit
        agent = Agent(id=new_id("agent"), name="a")
        await store.create_agent(agent, [])
        turn = _turn(agent.id, 1, "zebras")
        await store.commit(Changes(messages=turn, insert_only=True))
        # No flush, no background writer: the rows came with the commit.
        hits = await lt.search_recall(agent.id, "zebras", mode="fts")
        assert {h.record.id for h in hits} == {turn[0].id, turn[3].id, turn[5].id}
        assert await lt.recall_ids(agent.id) == set(await store.recall_candidate_ids(sorted(SKIP)))
        assert (await reconcile(store, lt, SKIP)).fixed == 0
    finally:
        await lt.close()
        await store.close()


async def test_a_failed_commit_writes_no_recall_row_and_its_batch_mates_land(schema_url: str) -> None:
    store, lt = await _open(schema_url)
    try:
        live_indexer(store, lt, SKIP)
        agent = Agent(id=new_id("agent"), name="a")
        await store.create_agent(agent, [])
        await store.commit(Changes(messages=_turn(agent.id, 1, "first"), insert_only=True))
        taken = Message(id=new_id("message"), agent_id=agent.id, seq=1, role="user", content="clashing okapi")
        fine = Message(id=new_id("message"), agent_id=agent.id, seq=7, role="user", content="landing okapi")
        # Both in one group-commit batch: the clash rolls back to its savepoint, the other commits.
        outcomes = await asyncio.gather(store.commit(Changes(messages=[taken], insert_only=True)),
                                        store.commit(Changes(messages=[fine], insert_only=True)),
                                        return_exceptions=True)
        assert isinstance(outcomes[0], Conflict) and outcomes[1] is None
        assert [h.record.id for h in await lt.search_recall(agent.id, "okapi", mode="fts")] == [fine.id]
    finally:
        await lt.close()
        await store.close()


async def test_deleting_an_agent_takes_its_recall_rows_and_passages_in_the_same_transaction(schema_url: str) -> None:
    store, lt = await _open(schema_url)
    try:
        live_indexer(store, lt, SKIP)
        doomed, kept = Agent(id=new_id("agent"), name="d"), Agent(id=new_id("agent"), name="k")
        for agent in (doomed, kept):
            await store.create_agent(agent, [])
            await store.commit(Changes(messages=_turn(agent.id, 1, "llamas"), insert_only=True))
            await lt.add_passages(agent.id, [("llamas live high", [])])
        assert await store.delete_agent(doomed.id)
        # The long-term memory was not asked: the store's transaction did it (a crash here leaves nothing).
        assert await lt.recall_ids(doomed.id) == set() and await lt.count_passages(doomed.id) == 0
        assert len(await lt.recall_ids(kept.id)) == 3 and await lt.count_passages(kept.id) == 1
        assert (await reconcile(store, lt, SKIP)).fixed == 0
    finally:
        await lt.close()
        await store.close()


async def test_with_pgvector_the_row_is_searchable_at_commit_and_gets_its_vector_after(
        pgvector_url: str, make_embedder: Any) -> None:
    name, url = await pg.create_schema(pgvector_url)
    store, lt = await _open(url, make_embedder())
    try:
        on_messages = live_indexer(store, lt, SKIP)
        assert on_messages is not None  # the vectors still need the embedder, after the commit
        agent = Agent(id=new_id("agent"), name="v")
        await store.create_agent(agent, [])
        turn = _turn(agent.id, 1, "narwhals")
        await store.commit(Changes(messages=turn, insert_only=True))
        assert len(await lt.search_recall(agent.id, "narwhals", mode="fts")) == 3
        con = await asyncpg.connect(url)
        try:
            unembedded = "SELECT count(*) FROM recall WHERE embedding IS NULL"
            assert await con.fetchval(unembedded) == 3
            on_messages(turn)
            await lt.flush()
            assert await con.fetchval(unembedded) == 0
        finally:
            await con.close()
        hits = await lt.search_recall(agent.id, "narwhals", mode="vector")
        assert hits and hits[0].vector_rank == 1
    finally:
        await lt.close()
        await store.close()
        await pg.drop_schema(pgvector_url, name)


async def test_the_embedded_backend_keeps_indexing_after_the_commit(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "memproxy.duckdb"))
    lt: LongTermMemory = LanceLongTermMemory(str(tmp_path / "lance"), None)
    await store.open()
    await lt.open()
    try:
        assert not store.index_recall_in_commit(SKIP)
        on_messages = live_indexer(store, lt, SKIP)
        assert on_messages is not None
        agent = Agent(id=new_id("agent"), name="e")
        await store.create_agent(agent, [])
        turn = _turn(agent.id, 1, "lemurs")
        await store.commit(Changes(messages=turn, insert_only=True))
        assert await lt.recall_ids(agent.id) == set()  # LanceDB is a separate index, fed after the commit
        on_messages(turn)
        await lt.flush()
        assert len(await lt.search_recall(agent.id, "lemurs", mode="fts")) == 3
    finally:
        await lt.close()
        await store.close()


async def test_a_huge_message_of_distinct_words_still_commits_and_is_found_by_its_beginning(schema_url: str) -> None:
    """A tsvector holds 1 MB at most: full text indexes a prefix, so the turn's transaction cannot fail on it."""
    from memory.postgres_migrations import FTS_PREFIX_CHARS

    store, lt = await _open(schema_url)
    try:
        live_indexer(store, lt, SKIP)
        agent = Agent(id=new_id("agent"), name="h")
        await store.create_agent(agent, [])
        words = " ".join(f"w{i}x" for i in range(300_000))  # ~2 MB of distinct words: 2.4 MB as a whole tsvector
        assert len(words) > 10 * FTS_PREFIX_CHARS
        huge = Message(id=new_id("message"), agent_id=agent.id, seq=1, role="user", content=f"okapi {words} tail")
        await store.commit(Changes(messages=[huge], insert_only=True))
        assert [h.record.id for h in await lt.search_recall(agent.id, "okapi", mode="fts")] == [huge.id]
        assert await lt.search_recall(agent.id, "tail", mode="fts") == []  # past the indexed prefix
        [passage] = await lt.add_passages(agent.id, [(f"zebra {words[:999_000]}", [])])
        assert [h.record.id for h in await lt.search_passages(agent.id, "zebra", mode="fts")] == [passage.id]
    finally:
        await lt.close()
        await store.close()
