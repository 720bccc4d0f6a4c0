"""DuckDBStore against a real DuckDB file: CRUD, ordering and cursors, group commit, atomicity, crash safety.

The CRUD, ordering and cursor tests take `store`, which is every backend (PostgreSQL too, on a fresh
schema); the group-commit internals and crash tests are DuckDB's own and take `duck`.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from memory.duckdb_store import DuckDBStore, open_store
from memory.migrations import MIGRATIONS, SchemaTooNewError, apply_migrations
from memory.models import Agent, Block, Changes, Message, Run, new_id
from memory.store import Conflict, NotFound, Store

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_block(label: str = "persona", value: str = "", **kw: object) -> Block:
    return Block(id=new_id("block"), label=label, value=value, **kw)  # type: ignore[arg-type]


def make_agent(name: str = "a", **kw: object) -> Agent:
    return Agent(id=new_id("agent"), name=name, **kw)  # type: ignore[arg-type]


def make_message(agent_id: str, seq: int, **kw: object) -> Message:
    values: dict[str, object] = {"role": "user", "content": f"m{seq}"}
    values.update(kw)
    return Message(id=new_id("message"), agent_id=agent_id, seq=seq, **values)  # type: ignore[arg-type]


def turn(agent_id: str, first_seq: int, count: int = 2) -> Changes:
    run = Run(id=new_id("run"), agent_id=agent_id, status="completed", usage={"total_tokens": 3})
    messages = [make_message(agent_id, first_seq + i, run_id=run.id) for i in range(count)]
    return Changes(messages=messages, runs=[run])


@pytest.fixture
async def duck(tmp_path: Path) -> AsyncIterator[DuckDBStore]:
    db = DuckDBStore(str(tmp_path / "data" / "memproxy.duckdb"))
    await db.open()
    yield db
    await db.close()


async def with_worker_blocked(db: Store, *changes: Changes) -> list[BaseException | None]:
    """Commit all `changes` while the worker is held, so they are drained as one batch."""
    if not isinstance(db, DuckDBStore):
        # PostgresStore's drain task is created by the first commit, so it runs after every task has queued.
        return list(await asyncio.gather(*(db.commit(c) for c in changes), return_exceptions=True))
    gate = threading.Event()
    assert db._executor is not None
    db._executor.submit(gate.wait)
    tasks = [asyncio.create_task(db.commit(c)) for c in changes]
    await asyncio.sleep(0)  # every task runs up to its wait, so all are queued before the worker resumes
    gate.set()
    return list(await asyncio.gather(*tasks, return_exceptions=True))


# --- agents and blocks ----------------------------------------------------------------------
async def test_create_and_get_agent_with_blocks(store: Store) -> None:
    persona = make_block("persona", "I am helpful", limit=500, description="who", metadata={"k": [1, 2]})
    human = make_block("human", "Ana", read_only=True)
    agent = make_agent(
        "helper", system="be nice", description="d", model="m", embedding="e", context_window_limit=8000,
        tools=["memory_insert"], tags=["x", "y"], metadata={"a": {"b": None}}, message_buffer_autoclear=True,
        llm_params={"temperature": 0.2}, block_ids=[human.id, persona.id],
    )
    await store.create_agent(agent, [persona, human])

    loaded = await store.get_agent(agent.id)
    assert loaded == agent
    assert loaded is not None and loaded.block_ids == [human.id, persona.id]
    assert await store.get_blocks([persona.id, "block-missing", human.id]) == [persona, human]
    assert await store.get_block(persona.id) == persona
    assert await store.get_agent("agent-missing") is None
    assert await store.get_block("block-missing") is None
    assert await store.count_agents() == 1

    loaded.tags.append("mutated")  # returned records are copies
    assert (await store.get_agent(agent.id)) == agent


async def test_timestamps_come_back_as_aware_utc(store: Store) -> None:
    plus5 = timezone(timedelta(hours=5))
    block = make_block(created_at=datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=plus5))
    await store.create_block(block)
    loaded = await store.get_block(block.id)
    assert loaded is not None
    assert loaded.created_at.tzinfo == timezone.utc
    assert loaded.created_at == datetime(2025, 6, 1, 7, 0, 0, 123456, tzinfo=timezone.utc)
    assert loaded.updated_at == block.updated_at


async def test_create_agent_is_atomic(store: Store) -> None:
    existing = make_block("persona")
    await store.create_block(existing)
    clash = replace(existing, label="other")  # same id: the insert must fail
    agent = make_agent(block_ids=[clash.id])
    with pytest.raises(Conflict):
        await store.create_agent(agent, [make_block("human"), clash])
    assert await store.get_agent(agent.id) is None
    assert await store.list_blocks() == [existing]

    dangling = make_agent(block_ids=["block-nope"])
    with pytest.raises(NotFound) as missing:
        await store.create_agent(dangling, [])
    assert (missing.value.kind, missing.value.ident) == ("block", "block-nope")
    assert await store.count_agents() == 0


async def test_list_agents_filters_order_and_cursors(store: Store) -> None:
    agents = [
        make_agent("alpha", tags=["a", "b"], created_at=at(1)),
        make_agent("beta", tags=["b"], created_at=at(2)),
        make_agent("gamma", tags=["c"], created_at=at(3)),
        make_agent("alpha", tags=["a", "c"], created_at=at(4)),
        make_agent("delta", tags=[], created_at=at(5)),
    ]
    for agent in reversed(agents):
        await store.create_agent(agent, [])
    ids = [a.id for a in agents]

    assert [a.id for a in await store.list_agents()] == ids
    assert [a.id for a in await store.list_agents(ascending=False)] == ids[::-1]
    assert [a.id for a in await store.list_agents(limit=2)] == ids[:2]
    assert [a.id for a in await store.list_agents(limit=2, ascending=False)] == [ids[4], ids[3]]
    assert [a.id for a in await store.list_agents(limit=None)] == ids
    assert await store.list_agents(limit=0) == []

    assert [a.id for a in await store.list_agents(name="alpha")] == [ids[0], ids[3]]
    assert [a.id for a in await store.list_agents(tags=["a", "c"])] == [ids[0], ids[2], ids[3]]
    assert [a.id for a in await store.list_agents(tags=["a", "c"], match_all_tags=True)] == [ids[3]]
    assert [a.id for a in await store.list_agents(tags=["b"], name="beta")] == [ids[1]]
    assert [a.id for a in await store.list_agents(tags=[])] == ids

    assert [a.id for a in await store.list_agents(after=ids[1])] == ids[2:]
    assert [a.id for a in await store.list_agents(after=ids[1], limit=2)] == ids[2:4]
    assert [a.id for a in await store.list_agents(before=ids[3])] == ids[:3]
    assert [a.id for a in await store.list_agents(before=ids[3], ascending=False)] == ids[2::-1]
    assert [a.id for a in await store.list_agents(after=ids[0], before=ids[4])] == ids[1:4]
    assert [a.id for a in await store.list_agents(after=ids[2], ascending=False, limit=1)] == [ids[4]]
    assert await store.list_agents(after="agent-unknown") == []


async def test_list_agents_breaks_created_at_ties_by_id(store: Store) -> None:
    same = [Agent(id=f"agent-{c}", name=c, created_at=at(7)) for c in "cab"]
    for agent in same:
        await store.create_agent(agent, [])
    assert [a.id for a in await store.list_agents()] == ["agent-a", "agent-b", "agent-c"]
    assert [a.id for a in await store.list_agents(after="agent-a")] == ["agent-b", "agent-c"]
    assert [a.id for a in await store.list_agents(before="agent-c", ascending=False)] == ["agent-b", "agent-a"]


async def test_update_agent_overwrites_row_and_attachments(store: Store) -> None:
    persona, human = make_block("persona"), make_block("human")
    standalone = make_block("notes")
    await store.create_block(standalone)
    agent = make_agent(block_ids=[persona.id, human.id])
    await store.create_agent(agent, [persona, human])

    changed = replace(agent, name="renamed", tags=["t"], llm_params={"top_p": 0.5}, updated_at=at(100),
                      block_ids=[standalone.id, persona.id])
    await store.update_agent(changed)
    assert await store.get_agent(agent.id) == changed
    assert await store.agents_for_block(human.id) == []
    assert await store.get_block(human.id) == human  # detaching does not delete

    with pytest.raises(NotFound, match="block-nope"):
        await store.update_agent(replace(changed, name="x", block_ids=["block-nope"]))
    assert await store.get_agent(agent.id) == changed  # the failed update left nothing behind

    ghost = make_agent("ghost")
    with pytest.raises(NotFound) as gone:
        await store.update_agent(ghost)
    assert (gone.value.kind, gone.value.ident) == ("agent", ghost.id)
    assert await store.count_agents() == 1


async def test_shared_block_is_seen_by_every_agent(store: Store) -> None:
    shared = make_block("org", "v1")
    await store.create_block(shared)
    own_a, own_b = make_block("persona"), make_block("persona")
    a = make_agent("a", block_ids=[own_a.id, shared.id])
    b = make_agent("b", block_ids=[shared.id, own_b.id])
    await store.create_agent(a, [own_a])
    await store.create_agent(b, [own_b])
    assert await store.agents_for_block(shared.id) == sorted([a.id, b.id])

    updated = replace(shared, value="v2", updated_at=at(50))
    await store.commit(Changes(blocks=[updated]))
    for agent in (a, b):
        loaded = await store.get_agent(agent.id)
        assert loaded is not None
        blocks = await store.get_blocks(loaded.block_ids)
        assert updated in blocks

    assert await store.delete_agent(a.id) is True
    assert await store.get_block(own_a.id) is None  # only a used it
    assert await store.get_block(shared.id) == updated  # b still holds it
    assert await store.agents_for_block(shared.id) == [b.id]

    assert await store.delete_agent(b.id) is True
    assert await store.get_block(shared.id) is None
    assert await store.get_block(own_b.id) is None


async def test_delete_agent_removes_its_history_only(store: Store) -> None:
    unattached = make_block("spare")
    await store.create_block(unattached)
    own = make_block("persona")
    keep, drop = make_agent("keep"), make_agent("drop", block_ids=[own.id])
    await store.create_agent(keep, [])
    await store.create_agent(drop, [own])
    await store.commit(turn(keep.id, 1))
    await store.commit(turn(drop.id, 1))

    assert await store.delete_agent(drop.id) is True
    assert await store.delete_agent(drop.id) is False
    assert await store.get_agent(drop.id) is None
    assert await store.count_messages(drop.id) == 0
    assert await store.list_runs(agent_id=drop.id) == []
    assert await store.get_block(own.id) is None
    assert await store.get_block(unattached.id) == unattached
    assert await store.count_messages(keep.id) == 2
    assert len(await store.list_runs(agent_id=keep.id)) == 1
    assert await store.count_agents() == 1


async def test_delete_block_detaches_it_everywhere(store: Store) -> None:
    shared, other = make_block("org"), make_block("persona")
    await store.create_block(shared)
    a = make_agent("a", block_ids=[shared.id, other.id])
    b = make_agent("b", block_ids=[shared.id])
    await store.create_agent(a, [other])
    await store.create_agent(b, [])

    assert await store.delete_block(shared.id) is True
    assert await store.delete_block(shared.id) is False
    assert (await store.get_agent(a.id)).block_ids == [other.id]  # type: ignore[union-attr]
    assert (await store.get_agent(b.id)).block_ids == []  # type: ignore[union-attr]
    assert await store.agents_for_block(shared.id) == []


async def test_list_blocks_label_and_cursors(store: Store) -> None:
    blocks = [make_block("human" if i % 2 else "persona", created_at=at(i)) for i in range(5)]
    for block in reversed(blocks):
        await store.create_block(block)
    ids = [b.id for b in blocks]
    assert [b.id for b in await store.list_blocks()] == ids
    assert [b.id for b in await store.list_blocks(label="human")] == [ids[1], ids[3]]
    assert [b.id for b in await store.list_blocks(after=ids[1], limit=2)] == ids[2:4]
    assert [b.id for b in await store.list_blocks(before=ids[2])] == ids[:2]
    assert [b.id for b in await store.list_blocks(limit=None)] == ids
    assert await store.list_blocks(before="block-unknown") == []


# --- messages -------------------------------------------------------------------------------
async def test_messages_order_cursors_and_context(store: Store) -> None:
    agent = make_agent()
    other = make_agent("other")
    await store.create_agent(agent, [])
    await store.create_agent(other, [])
    messages = [make_message(agent.id, seq, in_context=seq > 3) for seq in range(1, 9)]
    await store.commit(Changes(messages=messages[4:]))  # stored out of order: seq decides
    await store.commit(Changes(messages=messages[:4]))
    await store.commit(Changes(messages=[make_message(other.id, 1)]))
    ids = [m.id for m in messages]

    assert await store.list_messages(agent.id) == messages
    assert [m.id for m in await store.list_messages(agent.id, ascending=False)] == ids[::-1]
    assert [m.id for m in await store.list_messages(agent.id, limit=3, ascending=False)] == ids[:4:-1]
    assert [m.id for m in await store.list_messages(agent.id, limit=3)] == ids[:3]
    assert [m.id for m in await store.list_messages(agent.id, after=ids[2])] == ids[3:]
    assert [m.id for m in await store.list_messages(agent.id, before=ids[2])] == ids[:2]
    assert [m.id for m in await store.list_messages(agent.id, before=ids[6], limit=2, ascending=False)] == [
        ids[5], ids[4]]
    assert [m.id for m in await store.list_messages(agent.id, after=ids[1], before=ids[5])] == ids[2:5]
    assert [m.id for m in await store.list_messages(agent.id, in_context_only=True)] == ids[3:]
    assert [m.id for m in await store.list_messages(agent.id, in_context_only=True, limit=2, ascending=False)] == [
        ids[7], ids[6]]
    assert await store.list_messages(agent.id, after="message-unknown") == []
    other_first = (await store.list_messages(other.id))[0].id
    assert await store.list_messages(agent.id, after=other_first) == []  # a cursor from another agent
    assert await store.list_messages(agent.id, limit=None) == messages

    assert await store.get_messages([ids[5], "message-x", ids[1]]) == [messages[1], messages[5]]
    assert await store.count_messages(agent.id) == 8
    assert (await store.history_since(agent.id, 0)).top == 8
    assert (await store.history_since("agent-none", 0)).top == 0
    assert await store.count_messages("agent-none") == 0

    await store.reset_messages(agent.id)
    assert await store.list_messages(agent.id, in_context_only=True) == []
    assert await store.count_messages(agent.id) == 8
    assert len(await store.list_messages(other.id, in_context_only=True)) == 1


async def test_message_upsert_replaces_the_whole_row(store: Store) -> None:
    agent = make_agent()
    await store.create_agent(agent, [])
    original = make_message(agent.id, 1, role="assistant", content=None, metadata={"pending": True})
    await store.commit(Changes(messages=[original]))
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    rewritten = replace(original, content="done", tool_calls=calls, name="n", metadata={})
    await store.commit(Changes(messages=[rewritten]))
    assert await store.list_messages(agent.id) == [rewritten]
    tool = make_message(agent.id, 2, role="tool", tool_call_id="c1", content="ok")
    await store.commit(Changes(messages=[tool]))
    assert await store.list_messages(agent.id) == [rewritten, tool]


async def test_evictions(store: Store) -> None:
    agent = make_agent()
    await store.create_agent(agent, [])
    old = [make_message(agent.id, seq) for seq in (1, 2, 3)]
    await store.commit(Changes(messages=old))
    summary = make_message(agent.id, 4, role="system", metadata={"kind": "summary"})
    await store.commit(Changes(messages=[summary], evict_message_ids=[old[0].id, old[1].id]))
    assert [m.id for m in await store.list_messages(agent.id, in_context_only=True)] == [old[2].id, summary.id]

    # Within one Changes an eviction applies to a message upserted in it.
    fresh = make_message(agent.id, 5)
    await store.commit(Changes(messages=[fresh], evict_message_ids=[fresh.id]))
    assert (await store.get_messages([fresh.id]))[0].in_context is False

    # Across a batch, order is kept: evict-then-upsert leaves it in context, upsert-then-evict does not.
    back, gone = replace(old[0], content="back"), make_message(agent.id, 6)
    outcomes = await with_worker_blocked(
        store,
        Changes(evict_message_ids=[old[2].id]),
        Changes(messages=[replace(old[2], content="again")]),
        Changes(messages=[gone, back]),
        Changes(evict_message_ids=[gone.id]),
    )
    assert outcomes == [None] * 4
    by_id = {m.id: m for m in await store.list_messages(agent.id)}
    assert by_id[old[2].id].in_context and by_id[old[2].id].content == "again"
    assert by_id[back.id].in_context and by_id[back.id].content == "back"
    assert not by_id[gone.id].in_context


# --- runs -----------------------------------------------------------------------------------
async def test_runs_upsert_get_and_list(store: Store) -> None:
    a, b = make_agent("a"), make_agent("b")
    await store.create_agent(a, [])
    await store.create_agent(b, [])
    runs = [Run(id=new_id("run"), agent_id=(a if i % 2 == 0 else b).id, created_at=at(i)) for i in range(5)]
    await store.commit(Changes(runs=runs))
    done = replace(runs[0], status="completed", stop_reason="end_turn", steps=2,
                   usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                   timings={"ttft_ms": 1.5, "total_ms": 9.25}, metadata={"n": 1}, completed_at=at(9))
    await store.commit(Changes(runs=[done]))

    assert await store.get_run(done.id) == done
    assert await store.get_run("run-missing") is None
    ids = [r.id for r in runs]
    assert [r.id for r in await store.list_runs()] == ids[::-1]
    assert [r.id for r in await store.list_runs(agent_id=a.id)] == [ids[4], ids[2], ids[0]]
    assert [r.id for r in await store.list_runs(limit=2)] == [ids[4], ids[3]]
    assert [r.id for r in await store.list_runs(before=ids[3])] == [ids[2], ids[1], ids[0]]
    assert [r.id for r in await store.list_runs(after=ids[1], limit=2)] == [ids[4], ids[3]]
    assert [r.id for r in await store.list_runs(agent_id=b.id, before=ids[3])] == [ids[1]]
    failed = replace(runs[1], status="failed", error="boom")
    await store.commit(Changes(runs=[failed]))
    assert await store.get_run(failed.id) == failed


# --- durability and schema ------------------------------------------------------------------
async def test_reopen_returns_identical_records(tmp_path: Path) -> None:
    db = open_store(str(tmp_path / "nested" / "dir"))
    assert db.path == str(tmp_path / "nested" / "dir" / "memproxy.duckdb")
    await db.open()
    block = make_block("persona", "x" * 1000, metadata={"deep": {"list": [1, "two", None]}})
    agent = make_agent("kept", tags=["t"], block_ids=[block.id])
    await db.create_agent(agent, [block])
    changes = turn(agent.id, 1, 3)
    changes.messages[1].tool_calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    await db.commit(changes)
    await db.close()
    await db.close()  # idempotent

    again = open_store(str(tmp_path / "nested" / "dir"))
    await again.open()
    try:
        assert await again.get_agent(agent.id) == agent
        assert await again.get_blocks([block.id]) == [block]
        assert await again.list_messages(agent.id) == changes.messages
        assert await again.list_runs() == changes.runs
    finally:
        await again.close()


async def test_migrations_apply_once(tmp_path: Path) -> None:
    path = str(tmp_path / "m.duckdb")
    for _ in range(2):
        db = DuckDBStore(path)
        await db.open()
        await db.close()
    con = duckdb.connect(path)
    try:
        assert [row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()] == [v for v, _ in MIGRATIONS]
        assert apply_migrations(con) == []

        broken = [*MIGRATIONS, (99, "CREATE TABLE half (x INTEGER); SELECT no_such_column FROM half")]
        with pytest.raises(duckdb.Error):
            apply_migrations(con, broken)
        tables = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert "half" not in tables  # the failed migration rolled back entirely

        assert apply_migrations(con, [*MIGRATIONS, (99, "CREATE TABLE extra (x INTEGER)")]) == [99]
        with pytest.raises(SchemaTooNewError):
            apply_migrations(con)
        with pytest.raises(ValueError):
            apply_migrations(con, [(99, ""), (1, "")])
    finally:
        con.close()


async def test_migrations_renumber_duplicate_seqs_then_make_them_unique(tmp_path: Path) -> None:
    path = str(tmp_path / "v1.duckdb")
    twice, clean = make_agent("twice"), make_agent("clean")
    # Written by a version without the rule: two messages share seq 2, in creation order b then a.
    rows = [(twice.id, "message-b", 2, at(2)), (twice.id, "message-a", 2, at(3)), (twice.id, "message-c", 1, at(1)),
            (twice.id, "message-d", 3, at(4)), (clean.id, "message-e", 5, at(5)), (clean.id, "message-f", 9, at(6))]
    con = duckdb.connect(path)
    try:
        assert apply_migrations(con, MIGRATIONS[:1]) == [1]
        for agent_id, message_id, seq, created in rows:
            con.execute("INSERT INTO messages VALUES (?, ?, ?, 'user', 'x', NULL, NULL, NULL, NULL, true, '{}', ?)",
                        [message_id, agent_id, seq, created])
    finally:
        con.close()
    db = DuckDBStore(path)
    await db.open()
    try:
        assert [(m.id, m.seq) for m in await db.list_messages(twice.id)] == \
            [("message-c", 1), ("message-b", 2), ("message-a", 3), ("message-d", 4)]
        assert [(m.id, m.seq) for m in await db.list_messages(clean.id)] == [("message-e", 5), ("message-f", 9)]
        with pytest.raises(Conflict):
            await db.commit(Changes(messages=[make_message(clean.id, 9)]))
    finally:
        await db.close()


async def test_a_store_without_a_journal_tells_a_turns_append_from_other_writes() -> None:
    db = DuckDBStore(":memory:")  # no journal: a turn goes straight to the tables, through the same queue
    await db.open()
    try:
        agent = make_agent()
        await db.create_agent(agent, [])
        await db.append_turn(Changes(messages=[make_message(agent.id, 1), make_message(agent.id, 2)],
                                     insert_only=True))
        assert (await db.history_since(agent.id, 0)).reshapes == 0
        await db.commit(Changes(messages=[make_message(agent.id, 3)], insert_only=True))
        assert (await db.history_since(agent.id, 0)).reshapes == 1
    finally:
        await db.close()


async def test_in_memory_store_and_closed_store() -> None:
    db = DuckDBStore(":memory:")
    await db.open()
    agent = make_agent()
    await db.create_agent(agent, [])
    assert await db.get_agent(agent.id) == agent
    await db.close()
    with pytest.raises(RuntimeError):
        await db.get_agent(agent.id)
    with pytest.raises(RuntimeError):
        await db.commit(turn(agent.id, 1))
    await db.commit(Changes())  # nothing to write is not an error


# --- group commit and atomicity -------------------------------------------------------------
async def test_group_commit_under_50_concurrent_commits(duck: DuckDBStore) -> None:
    agents = [make_agent(f"a{i}") for i in range(50)]
    for agent in agents:
        await duck.create_agent(agent, [])
    before = duck.commit_transactions
    batch = [turn(agent.id, 1) for agent in agents]
    await asyncio.gather(*(duck.commit(changes) for changes in batch))
    assert duck.commit_transactions - before < 50  # commits shared transactions
    for agent, changes in zip(agents, batch):
        assert await duck.list_messages(agent.id) == changes.messages
        assert await duck.list_runs(agent_id=agent.id) == changes.runs

    before = duck.commit_transactions
    outcomes = await with_worker_blocked(duck, *(turn(agent.id, 10) for agent in agents))
    assert outcomes == [None] * 50
    assert duck.commit_transactions - before == 1


async def test_a_large_group_reads_back_value_for_value(duck: DuckDBStore) -> None:
    """A group past a few rows goes in as Arrow columns: every kind of value must come back as it went in."""
    agent = make_agent()
    await duck.create_agent(agent, [])
    plus5, minus8 = timezone(timedelta(hours=5)), timezone(timedelta(hours=-8))
    odd = [
        {"content": "plain"},
        {"content": None, "tool_calls": [{"id": "c1", "type": "function",
                                          "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
        {"role": "tool", "content": "ok", "tool_call_id": "c1", "name": "f"},
        {"content": "zwölf 🐍 日本語 \u0000 nul", "metadata": {"kind": "summary", "n": [1, 2]}},
        {"content": "", "in_context": False, "created_at": datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=plus5)},
        {"content": "x" * 100_000, "created_at": datetime(1999, 12, 31, 16, 0, tzinfo=minus8)},
    ]
    changes = []
    for i, fields in enumerate(odd * 4):
        run = Run(id=new_id("run"), agent_id=agent.id, status="completed", steps=2**31 - 1 - i,
                  usage={"total_tokens": i}, error=None if i % 2 else "boom", completed_at=at(i))
        changes.append(Changes(messages=[make_message(agent.id, 2**40 + i, run_id=run.id, **fields)], runs=[run]))
    before = duck.commit_transactions
    assert await with_worker_blocked(duck, *changes) == [None] * len(changes)
    assert duck.commit_transactions - before == 1  # one group: 24 messages and 24 runs in one insert each
    stored = await duck.list_messages(agent.id, limit=None)
    assert stored == [m for c in changes for m in c.messages]
    assert all(m.created_at.tzinfo == timezone.utc for m in stored)
    assert stored[4].created_at == datetime(2024, 2, 29, 18, 59, 59, 999999, tzinfo=timezone.utc)
    for c in changes:
        assert await duck.get_run(c.runs[0].id) == c.runs[0]

    # A value Arrow cannot take fails with DuckDB's own data error, as a few rows would (a journaled turn
    # failing so is passed over, not held back as if the tables were down), and leaves nothing.
    bad = turn(agent.id, 10, 8)
    bad.messages[5].seq = "not a number"  # type: ignore[assignment]
    with pytest.raises(duckdb.ConversionException):
        await duck.commit(bad)
    assert await duck.count_messages(agent.id) == len(changes)


async def test_bad_changes_fails_alone_and_leaves_nothing(duck: DuckDBStore) -> None:
    agent = make_agent()
    await duck.create_agent(agent, [])
    good_before, good_after = turn(agent.id, 1), turn(agent.id, 20)
    null_role = turn(agent.id, 5, 3)
    null_role.messages[2].role = None  # type: ignore[assignment]  # NOT NULL violation on the last row
    bad_seq = turn(agent.id, 10, 3)
    bad_seq.messages[1].seq = "not a number"  # type: ignore[assignment]
    bad_run = turn(agent.id, 15, 3)  # its messages are written before its run fails
    bad_run.runs[0].status = None  # type: ignore[assignment]

    before = duck.commit_transactions
    outcomes = await with_worker_blocked(duck, good_before, null_role, bad_seq, bad_run, good_after)
    assert duck.commit_transactions - before == 2  # the batch failed, then each good one committed alone
    assert outcomes[0] is None and outcomes[4] is None
    assert isinstance(outcomes[1], duckdb.ConstraintException)
    assert isinstance(outcomes[2], duckdb.Error)
    assert isinstance(outcomes[3], duckdb.ConstraintException)

    stored = await duck.list_messages(agent.id)
    assert stored == good_before.messages + good_after.messages
    assert {r.id for r in await duck.list_runs()} == {good_before.runs[0].id, good_after.runs[0].id}
    assert await duck.get_run(null_role.runs[0].id) is None
    assert await duck.get_run(bad_seq.runs[0].id) is None

    # Alone, a bad Changes raises to its caller and leaves nothing either.
    for bad in (null_role, bad_run):
        with pytest.raises(duckdb.ConstraintException):
            await duck.commit(bad)
    assert await duck.count_messages(agent.id) == 4


async def test_cancelled_commit_still_lands_once_queued(duck: DuckDBStore) -> None:
    agent = make_agent()
    await duck.create_agent(agent, [])
    changes = turn(agent.id, 1)
    gate = threading.Event()
    assert duck._executor is not None
    duck._executor.submit(gate.wait)
    task = asyncio.create_task(duck.commit(changes))
    await asyncio.sleep(0)
    task.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await duck.list_messages(agent.id) == changes.messages


async def test_unserialisable_changes_fail_before_queueing(duck: DuckDBStore) -> None:
    agent = make_agent()
    await duck.create_agent(agent, [])
    changes = turn(agent.id, 1)
    changes.runs[0].metadata = {"x": object()}
    with pytest.raises(TypeError):
        await duck.commit(changes)
    assert await duck.count_messages(agent.id) == 0


CRASH_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from memory.duckdb_store import DuckDBStore
    from memory.models import Changes, Message, Run, new_id

    async def main(path, agent_id):
        store = DuckDBStore(path)
        await store.open()
        seq = (await store.history_since(agent_id, 0)).top
        done = 0
        while True:
            batch = []
            for _ in range(8):
                run = Run(id=new_id("run"), agent_id=agent_id)
                messages = []
                for _ in range(3):
                    seq += 1
                    messages.append(Message(id=new_id("message"), agent_id=agent_id, seq=seq, role="user",
                                            content="x" * 2000, run_id=run.id))
                batch.append(Changes(messages=messages, runs=[run]))
            await asyncio.gather(*(store.commit(c) for c in batch))
            done += len(batch)
            print(done, flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_sigkill_mid_write_leaves_only_whole_changes(tmp_path: Path) -> None:
    path = str(tmp_path / "crash.duckdb")
    agent = make_agent("crash")
    db = DuckDBStore(path)
    await db.open()
    await db.create_agent(agent, [])
    await db.close()
    script = tmp_path / "writer.py"
    script.write_text(CRASH_WRITER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    acknowledged = 0
    rng = random.Random(7)
    for _ in range(6):  # crash repeatedly: each run starts from the database the last crash left
        target = acknowledged + 40
        child = subprocess.Popen([sys.executable, str(script), path, agent.id], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO_ROOT))
        try:
            assert child.stdout is not None
            last = 0
            while last < target - acknowledged:
                line = child.stdout.readline()
                assert line, f"writer exited early: {child.stderr.read() if child.stderr else ''}"
                last = int(line)
            time.sleep(rng.uniform(0, 0.02))  # land anywhere in the next batch, not just after a print
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
            if child.stdout is not None:
                child.stdout.close()
            if child.stderr is not None:
                child.stderr.close()
        acknowledged += last

        db = DuckDBStore(path)
        await db.open()
        try:
            runs = await db.list_runs(agent_id=agent.id, limit=None)
            messages = await db.list_messages(agent.id, limit=None)
        finally:
            await db.close()
        assert len(runs) >= acknowledged  # every acknowledged commit survived
        per_run: dict[str | None, int] = {}
        for message in messages:
            per_run[message.run_id] = per_run.get(message.run_id, 0) + 1
        assert set(per_run) == {run.id for run in runs}
        assert set(per_run.values()) == {3}
        assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
        acknowledged = len(runs)


async def test_insert_only_changes_insert_and_refuse_duplicates(store: Store) -> None:
    agent = make_agent()
    await store.create_agent(agent, [])
    first = [make_message(agent.id, 1), make_message(agent.id, 2)]
    run = Run(id=new_id("run"), agent_id=agent.id, status="completed")
    await store.commit(Changes(messages=first, runs=[run], evict_message_ids=[first[0].id], insert_only=True))
    stored = await store.list_messages(agent.id, limit=None)
    assert [m.id for m in stored] == [m.id for m in first]
    assert [m.in_context for m in stored] == [False, True]  # an eviction in the same Changes still applies
    assert (await store.get_run(run.id)).status == "completed"
    with pytest.raises(Conflict):
        await store.commit(Changes(messages=[first[1]], insert_only=True))
    assert len(await store.list_messages(agent.id, limit=None)) == 2


async def test_buffer_pool_and_checkpoint_are_bounded(tmp_path: Path) -> None:
    def settings(con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
        row = con.execute("SELECT current_setting('memory_limit'), current_setting('checkpoint_threshold')").fetchone()
        return row  # type: ignore[return-value]

    bounded = DuckDBStore(str(tmp_path / "a.duckdb"), memory_limit="96MB")
    await bounded.open()
    try:
        limit, checkpoint = await bounded._run(settings)
        assert (limit, checkpoint) == ("91.5 MiB", "3.8 MiB")  # 96 MB and 4 MB, as DuckDB prints them
    finally:
        await bounded.close()
    with pytest.raises(duckdb.Error):  # a typo in the setting stops start-up instead of running unbounded
        broken = DuckDBStore(str(tmp_path / "b.duckdb"), memory_limit="lots")
        await broken.open()
