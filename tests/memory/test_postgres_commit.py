"""PostgreSQL's group commit writes each `Changes` as one statement: whatever it holds, alone or in a batch.

Counted with asyncpg's query logger on the connection the group commit is given, so "one statement" is what
went to the server, and checked against the tables themselves. The store-wide behaviour is in
test_postgres_store.py and test_store_contract.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from memory.models import Agent, Block, Changes, Message, Run, new_id
from memory.postgres_commit import PgGroupCommit
from memory.postgres_store import PostgresStore
from memory.store import Conflict, FenceLost, NotFound


@pytest.fixture
def store(pg_store: PostgresStore) -> PostgresStore:
    return pg_store


@pytest.fixture
async def logged(store: PostgresStore) -> AsyncIterator[tuple[PgGroupCommit, list[str]]]:
    """A group commit on one connection whose every query is logged."""
    con = await asyncpg.connect(store.dsn)
    queries: list[str] = []
    con.add_query_logger(lambda record: queries.append(record.query))

    @contextlib.asynccontextmanager
    async def acquire() -> AsyncIterator[asyncpg.Connection]:
        yield con

    group = PgGroupCommit(acquire)
    group.recall_skip = frozenset()
    try:
        yield group, queries
    finally:
        await group.close()
        await con.close()


def said(agent_id: str, seq: int, text: str, run_id: str | None = None) -> Message:
    return Message(id=new_id("message"), agent_id=agent_id, seq=seq, role="user", content=text, run_id=run_id)


async def agent_with_history(store: PostgresStore, count: int = 3) -> tuple[Agent, Block, list[Message]]:
    block = Block(id=new_id("block"), label="human", value="Name: Ana")
    agent = Agent(id=new_id("agent"), name="a")
    await store.create_agent(agent, [block])
    messages = [said(agent.id, seq, f"m{seq}") for seq in range(1, count + 1)]
    await store.append_turn(Changes(messages=messages, insert_only=True))
    return agent, block, messages


async def tables(store: PostgresStore, agent_id: str, block_id: str) -> dict[str, Any]:
    """What the tables hold of the agent: its messages in context, all its messages, block value, reshapes, fence."""
    con = await asyncpg.connect(store.dsn)
    try:
        rows = await con.fetch("SELECT content, in_context FROM messages WHERE agent_id = $1 ORDER BY seq", agent_id)
        agent = await con.fetchrow("SELECT reshapes, fence FROM agents WHERE id = $1", agent_id)
        block = await con.fetchval("SELECT value FROM blocks WHERE id = $1", block_id)
        recall = await con.fetchval("SELECT count(*) FROM recall WHERE agent_id = $1", agent_id)
    finally:
        await con.close()
    return {"in_context": [r[0] for r in rows if r[1]], "all": [r[0] for r in rows], "block": block,
            "reshapes": agent[0] if agent else None, "fence": agent[1] if agent else None, "recall": recall}


async def every_kind(group: PgGroupCommit, agent: Agent, block: Block, history: list[Message]) -> Run:
    block.value = "Name: Ana. Lives in Lisbon."  # a memory edit
    await group.commit(Changes(blocks=[block]))
    run = Run(id=new_id("run"), agent_id=agent.id, status="running")
    await group.commit(Changes(runs=[run]))  # a run's state, written again later
    run.status = "completed"
    await group.commit(Changes(runs=[run]))
    summary = Message(id=new_id("message"), agent_id=agent.id, seq=4, role="system", content="summary")
    # A compaction under the turn's lock: the summary in, two messages out, the history reshaped.
    await group.commit(Changes(messages=[summary], evict_message_ids=[history[0].id, history[1].id],
                               insert_only=True, fence=(agent.id, 5)))
    return run


async def test_every_kind_of_commit_is_one_statement(store: PostgresStore,
                                                     logged: tuple[PgGroupCommit, list[str]]) -> None:
    group, queries = logged
    await every_kind(group, *await agent_with_history(store))  # asyncpg reads the types it meets, once
    queries.clear()
    agent, block, history = await agent_with_history(store)
    before = await tables(store, agent.id, block.id)
    run = await every_kind(group, agent, block, history)
    assert len(queries) == 4 and all(q.startswith("WITH ") for q in queries)

    after = await tables(store, agent.id, block.id)
    assert after["block"] == "Name: Ana. Lives in Lisbon."
    assert after["in_context"] == ["m3", "summary"] and after["all"] == ["m1", "m2", "m3", "summary"]
    assert after["reshapes"] == before["reshapes"] + 1 and after["fence"] == 5
    assert (await store.get_run(run.id)).status == "completed"  # type: ignore[union-attr]


async def test_a_refused_fence_writes_none_of_the_commit(store: PostgresStore,
                                                         logged: tuple[PgGroupCommit, list[str]]) -> None:
    group, queries = logged
    agent, block, history = await agent_with_history(store)
    await group.commit(Changes(messages=[said(agent.id, 4, "m4")], insert_only=True, fence=(agent.id, 9)))
    before = await tables(store, agent.id, block.id)
    block.value = "overwritten"
    stale = Changes(blocks=[block], messages=[said(agent.id, 5, "late summary")],
                    evict_message_ids=[history[0].id], insert_only=True, fence=(agent.id, 8))
    with pytest.raises(FenceLost):
        await group.commit(stale)
    assert await tables(store, agent.id, block.id) == before  # no block, message, eviction, reshape or fence
    gone = Changes(messages=[said(new_id("agent"), 1, "x")], insert_only=True, fence=(new_id("agent"), 1))
    with pytest.raises(NotFound):
        await group.commit(gone)


async def test_messages_written_and_evicted_at_once_end_out_of_context(store: PostgresStore) -> None:
    agent, block, history = await agent_with_history(store)
    before = await tables(store, agent.id, block.id)
    fresh = said(agent.id, 4, "m4")
    # As a turn's append (the reshape count still moves: the copy's history is not just longer) ...
    await store.append_turn(Changes(messages=[fresh], evict_message_ids=[fresh.id, history[0].id], insert_only=True,
                                    fence=(agent.id, 3)))
    after = await tables(store, agent.id, block.id)
    assert after["in_context"] == ["m2", "m3"] and after["all"] == ["m1", "m2", "m3", "m4"]
    assert after["reshapes"] == before["reshapes"] + 1
    # ... and unfenced, rewriting a stored message whole while evicting it.
    history[1].content = "m2, rewritten"
    await store.commit(Changes(messages=[history[1]], evict_message_ids=[history[1].id]))
    after = await tables(store, agent.id, block.id)
    assert after["in_context"] == ["m3"] and "m2, rewritten" in after["all"]
    assert after["reshapes"] == before["reshapes"] + 2


async def test_a_batch_of_every_kind_is_pipelined_and_a_bad_one_still_fails_alone(
        store: PostgresStore, logged: tuple[PgGroupCommit, list[str]]) -> None:
    group, queries = logged
    (a, block_a, history_a), (b, block_b, _), (c, block_c, _) = [await agent_with_history(store) for _ in range(3)]
    block_a.value = "edited"
    summary = Message(id=new_id("message"), agent_id=b.id, seq=4, role="system", content="summary")
    batch = [Changes(blocks=[block_a]),
             Changes(messages=[summary], evict_message_ids=[m.id for m in history_a[:1]], insert_only=True,
                     fence=(b.id, 2)),
             Changes(messages=[said(c.id, 4, "m4")], runs=[Run(id=new_id("run"), agent_id=c.id)], insert_only=True,
                     fence=(c.id, 2))]
    assert await asyncio.gather(*(group.commit(changes) for changes in batch)) == [None, None, None]
    # BEGIN, one round trip per shape, the fences' read, COMMIT: no savepoint.
    assert group.pipelined == 1 and group.transactions == 1
    assert not any("SAVEPOINT" in q.upper() for q in queries)
    assert (await tables(store, a.id, block_a.id))["block"] == "edited"
    assert (await tables(store, a.id, block_a.id))["in_context"] == ["m2", "m3"]  # another agent's eviction
    assert (await tables(store, b.id, block_b.id))["in_context"] == ["m1", "m2", "m3", "summary"]
    assert (await tables(store, c.id, block_c.id))["all"] == ["m1", "m2", "m3", "m4"]

    block_c.value = "edited too"
    taken = Changes(messages=[said(b.id, 4, "seq 4 is the summary's")], insert_only=True, fence=(b.id, 3))
    outcomes = await asyncio.gather(group.commit(Changes(blocks=[block_c])), group.commit(taken),
                                    return_exceptions=True)
    assert outcomes[0] is None and isinstance(outcomes[1], Conflict)
    assert group.pipelined == 1 and group.transactions == 2  # rolled back whole, then each in a savepoint
    assert (await tables(store, c.id, block_c.id))["block"] == "edited too"
    assert (await tables(store, b.id, block_b.id))["fence"] == 2  # the bad one's fence went with it
