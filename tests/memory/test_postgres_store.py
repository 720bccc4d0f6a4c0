"""PostgresStore's own behaviour: migrations under an advisory lock, group commit with savepoints.

The behaviour every backend shares is in test_store_contract.py and test_duckdb_store.py (`store`).
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from memory.models import Agent, Changes, Message, Run, new_id
from memory import postgres_store
from memory.postgres_migrations import MIGRATIONS, apply_migrations
from memory.postgres_store import PostgresStore
from memory.store import Conflict, FenceLost, NotFound, SchemaTooNewError, StoreError


@pytest.fixture
def store(pg_store: PostgresStore) -> PostgresStore:
    return pg_store


def turn(agent_id: str, first_seq: int, count: int = 2) -> Changes:
    run = Run(id=new_id("run"), agent_id=agent_id, status="completed")
    messages = [Message(id=new_id("message"), agent_id=agent_id, seq=first_seq + i, role="user",
                        content=f"m{first_seq + i}", run_id=run.id) for i in range(count)]
    return Changes(messages=messages, runs=[run])


async def new_agent(store: PostgresStore) -> Agent:
    agent = Agent(id=new_id("agent"), name="a")
    await store.create_agent(agent, [])
    return agent


async def test_two_processes_opening_at_once_migrate_once(postgres_schema_url: str) -> None:
    connections = [await asyncpg.connect(postgres_schema_url) for _ in range(3)]
    try:
        applied = await asyncio.gather(*(apply_migrations(con) for con in connections))
        versions = [version for version, _ in MIGRATIONS]
        assert sorted(v for run in applied for v in run) == versions  # each version applied exactly once
        assert sum(bool(run) for run in applied) == 1
        rows = await connections[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == versions
    finally:
        for con in connections:
            await con.close()


async def test_two_stores_opening_a_fresh_database_at_once_both_work(postgres_schema_url: str) -> None:
    stores = [PostgresStore(postgres_schema_url) for _ in range(2)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        agent = await new_agent(stores[0])
        assert await stores[1].get_agent(agent.id) == agent
        rows = await stores[0]._fetch("SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY 1")
        assert [tuple(r) for r in rows] == [(version, 1) for version, _ in MIGRATIONS]
    finally:
        for s in stores:
            await s.close()


async def test_a_schema_from_a_newer_memproxy_is_refused(postgres_schema_url: str) -> None:
    con = await asyncpg.connect(postgres_schema_url)
    try:
        await apply_migrations(con)
        await con.execute("INSERT INTO schema_migrations VALUES (9999, now())")
    finally:
        await con.close()
    with pytest.raises(SchemaTooNewError):
        await PostgresStore(postgres_schema_url).open()


async def test_concurrent_commits_share_transactions(store: PostgresStore) -> None:
    agents = [await new_agent(store) for _ in range(30)]
    before = store.commit_transactions
    batch = [turn(agent.id, 1) for agent in agents]
    assert await asyncio.gather(*(store.commit(c) for c in batch)) == [None] * 30
    assert store.commit_transactions - before < 30
    for agent, changes in zip(agents, batch):
        assert await store.list_messages(agent.id) == changes.messages
        assert await store.list_runs(agent_id=agent.id) == changes.runs


async def test_a_bad_changes_in_a_batch_fails_alone(store: PostgresStore) -> None:
    agent = await new_agent(store)
    good_before, good_after = turn(agent.id, 1), turn(agent.id, 20)
    null_role = turn(agent.id, 5, 3)
    null_role.messages[2].role = None  # type: ignore[assignment]  # NOT NULL violation on the last row
    taken_seq = turn(agent.id, 2)  # seq 2 is taken by good_before, earlier in the same batch
    bad_run = turn(agent.id, 15, 3)  # its messages are written before its run fails
    bad_run.runs[0].status = None  # type: ignore[assignment]
    before = store.commit_transactions
    outcomes = await asyncio.gather(*(store.commit(c) for c in (good_before, null_role, taken_seq, bad_run,
                                                                 good_after)), return_exceptions=True)
    assert store.commit_transactions - before == 1  # one transaction, the bad ones rolled back to savepoints
    assert outcomes[0] is None and outcomes[4] is None
    assert isinstance(outcomes[1], asyncpg.NotNullViolationError)
    assert isinstance(outcomes[2], Conflict)
    assert isinstance(outcomes[3], asyncpg.NotNullViolationError)
    assert await store.list_messages(agent.id) == good_before.messages + good_after.messages
    assert {r.id for r in await store.list_runs()} == {good_before.runs[0].id, good_after.runs[0].id}


async def test_a_cancelled_commit_still_lands_once_queued(store: PostgresStore) -> None:
    agent = await new_agent(store)
    changes = turn(agent.id, 1)
    task = asyncio.create_task(store.commit(changes))
    await asyncio.sleep(0)  # queued, and the drain task started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()  # waits for the queue to be written
    await store.open()
    assert await store.list_messages(agent.id) == changes.messages


async def test_unserialisable_changes_fail_before_queueing(store: PostgresStore) -> None:
    agent = await new_agent(store)
    changes = turn(agent.id, 1)
    changes.runs[0].metadata = {"x": object()}
    with pytest.raises(TypeError):
        await store.commit(changes)
    assert await store.count_messages(agent.id) == 0


async def test_an_unreachable_database_is_named_without_its_password() -> None:
    with pytest.raises(StoreError) as failed:
        # Port 1 on loopback refuses at once: nothing listens there.
        await PostgresStore("postgresql://memproxy:s3cret-pw@127.0.0.1:1/nodb").open()
    assert "postgresql://memproxy:***@127.0.0.1:1/nodb" in str(failed.value) and "s3cret" not in str(failed.value)


async def test_a_closed_store_refuses_work(postgres_schema_url: str) -> None:
    db = PostgresStore(postgres_schema_url)
    with pytest.raises(RuntimeError):
        await db.get_agent("agent-x")
    await db.open()
    await db.close()
    await db.close()  # closing twice is harmless
    with pytest.raises(RuntimeError):
        await db.commit(Changes(evict_message_ids=["message-x"]))


async def test_a_nul_character_is_stored_as_a_replacement_character(store: PostgresStore) -> None:
    agent = Agent(id=new_id("agent"), name="nul\x00name")
    await store.create_agent(agent, [])
    changes = turn(agent.id, 1)
    changes.messages[0].content = "before\x00after"
    await store.commit(changes)  # PostgreSQL text cannot hold NUL: the write must still succeed
    assert (await store.list_messages(agent.id))[0].content == "before\ufffdafter"
    assert (await store.get_agent(agent.id)).name == "nul\ufffdname"  # type: ignore[union-attr]
    assert [a.id for a in await store.list_agents(name="nul\x00name")] == [agent.id]


async def test_a_long_listing_becomes_messages_a_slice_per_pass_of_the_loop(
        store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = await new_agent(store)
    await store.commit(turn(agent.id, 1, count=600))
    whole = await store.list_messages(agent.id, limit=None)
    monkeypatch.setattr(postgres_store, "ROWS_PER_PASS", 100)
    passes, listing = 0, True
    made_at: list[int] = []  # the loop's pass each row became a message in
    make = postgres_store.message_from_row

    def making(row: tuple[object, ...]) -> Message:
        made_at.append(passes)
        return make(row)

    async def ticking() -> None:
        nonlocal passes
        while listing:
            passes += 1
            await asyncio.sleep(0)

    monkeypatch.setattr(postgres_store, "message_from_row", making)
    ticker = asyncio.create_task(ticking())
    sliced = await store.list_messages(agent.id, limit=None)
    by_id = await store.get_messages([m.id for m in whole])
    listing = False
    await ticker
    assert sliced == whole == by_id and [m.seq for m in sliced] == list(range(1, 601))
    assert len(made_at) == 1200
    # Six slices a listing, each made within one pass, other tasks running between them.
    for made in (made_at[:600], made_at[600:]):
        slices = [made[i:i + 100] for i in range(0, 600, 100)]
        assert all(len(set(s)) == 1 for s in slices)
        assert all(a[0] < b[0] for a, b in zip(slices, slices[1:]))


def appended(agent_id: str, first_seq: int, token: int) -> Changes:
    """A turn's append, as a turn under its lease writes it (new rows, fenced)."""
    changes = turn(agent_id, first_seq)
    changes.insert_only, changes.fence = True, (agent_id, token)
    return changes


async def _stored(store: PostgresStore, agent_id: str) -> tuple[list[str], int, list[str], int]:
    """The agent's message ids, its runs, its recall rows' texts and its fence, read straight from the tables."""
    con = await asyncpg.connect(store.dsn)
    try:
        recall = await con.fetch("SELECT text FROM recall WHERE agent_id = $1 ORDER BY text", agent_id)
        fence = await con.fetchval("SELECT fence FROM agents WHERE id = $1", agent_id)
    finally:
        await con.close()
    messages = [m.id for m in await store.list_messages(agent_id)]
    return messages, len(await store.list_runs(agent_id=agent_id)), [r[0] for r in recall], fence


async def test_a_turns_append_lands_its_messages_run_recall_rows_and_fence_together(store: PostgresStore) -> None:
    store.index_recall_in_commit(frozenset())
    agent = await new_agent(store)
    first, second = appended(agent.id, 1, 3), appended(agent.id, 3, 3)  # the same lock may write again
    await store.append_turn(first)
    await store.append_turn(second)
    assert await _stored(store, agent.id) == ([m.id for m in first.messages + second.messages], 2,
                                              ["m1", "m2", "m3", "m4"], 3)
    # Without a fence (one process, no lease) the rows land all the same.
    unfenced = turn(agent.id, 5)
    unfenced.insert_only = True
    await store.append_turn(unfenced)
    assert (await _stored(store, agent.id))[1:] == (3, ["m1", "m2", "m3", "m4", "m5", "m6"], 3)


async def test_a_turns_append_under_a_taken_over_lock_writes_nothing(store: PostgresStore) -> None:
    store.index_recall_in_commit(frozenset())
    agent = await new_agent(store)
    await store.append_turn(appended(agent.id, 1, 5))
    before = await _stored(store, agent.id)
    with pytest.raises(FenceLost):
        await store.append_turn(appended(agent.id, 3, 4))  # an older lock's holder, back from a pause
    assert await _stored(store, agent.id) == before
    with pytest.raises(Conflict):
        await store.append_turn(appended(agent.id, 2, 6))  # a newer lock, but seq 2 is taken: the fence stays too
    assert await _stored(store, agent.id) == before
    gone = Agent(id=new_id("agent"), name="never stored")
    with pytest.raises(NotFound):
        await store.append_turn(appended(gone.id, 1, 1))
    assert await _stored(store, gone.id) == ([], 0, [], None)


async def test_a_refused_append_in_a_batch_fails_alone(store: PostgresStore) -> None:
    store.index_recall_in_commit(frozenset())
    agents = [await new_agent(store) for _ in range(3)]
    await store.append_turn(appended(agents[1].id, 1, 9))
    before = store.commit_transactions
    outcomes = await asyncio.gather(store.append_turn(appended(agents[0].id, 1, 1)),
                                    store.append_turn(appended(agents[1].id, 3, 2)),  # its lock was taken over
                                    store.append_turn(appended(agents[2].id, 1, 1)), return_exceptions=True)
    assert store.commit_transactions - before == 1
    assert outcomes[0] is None and outcomes[2] is None and isinstance(outcomes[1], FenceLost)
    assert [len((await _stored(store, a.id))[0]) for a in agents] == [2, 2, 2]
    assert (await _stored(store, agents[1].id))[2:] == (["m1", "m2"], 9)


async def test_a_batch_of_appends_is_pipelined_and_one_that_breaks_a_rule_still_fails_alone(
        store: PostgresStore) -> None:
    store.index_recall_in_commit(frozenset())
    agents = [await new_agent(store) for _ in range(4)]
    await store.append_turn(appended(agents[1].id, 1, 1))
    only_a_run = Changes(runs=[Run(id=new_id("run"), agent_id=agents[3].id, status="failed")], insert_only=True,
                         fence=(agents[3].id, 1))  # another shape: no messages, no recall rows
    gone = new_id("agent")  # deleted meanwhile
    before, pipelined = store.commit_transactions, store.commit_pipelined
    outcomes = await asyncio.gather(store.append_turn(appended(agents[0].id, 1, 1)),
                                    store.append_turn(appended(agents[1].id, 2, 1)),  # seq 2 is taken
                                    store.append_turn(appended(gone, 1, 1)),
                                    store.append_turn(appended(agents[2].id, 1, 1)),
                                    store.append_turn(only_a_run), return_exceptions=True)
    # The pipelined transaction rolled back whole at the taken seq; each went again in its own savepoint.
    assert store.commit_transactions - before == 1 and store.commit_pipelined == pipelined
    assert outcomes[0] is None and outcomes[3] is None and outcomes[4] is None
    assert isinstance(outcomes[1], Conflict) and isinstance(outcomes[2], NotFound)
    assert [len((await _stored(store, a.id))[0]) for a in agents] == [2, 2, 2, 0]
    assert (await _stored(store, agents[3].id))[1:] == (1, [], 1)
    assert await _stored(store, gone) == ([], 0, [], None)

    before = store.commit_transactions
    outcomes = await asyncio.gather(*(store.append_turn(appended(a.id, 3, 2)) for a in agents[:3]),
                                    store.append_turn(appended(gone, 1, 1)), return_exceptions=True)
    assert store.commit_transactions - before == 1 and store.commit_pipelined == pipelined + 1  # no rule broken
    assert outcomes[:3] == [None] * 3 and isinstance(outcomes[3], NotFound)
    assert [(await _stored(store, a.id))[3] for a in agents[:3]] == [2, 2, 2]


async def test_two_locks_of_one_agent_in_one_batch_each_get_their_answer(store: PostgresStore) -> None:
    agent = await new_agent(store)
    newer, older = appended(agent.id, 1, 7), appended(agent.id, 3, 6)  # the older holder commits second
    pipelined = store.commit_pipelined
    outcomes = await asyncio.gather(store.append_turn(newer), store.append_turn(older), return_exceptions=True)
    assert outcomes[0] is None and isinstance(outcomes[1], FenceLost)
    assert await _stored(store, agent.id) == ([m.id for m in newer.messages], 1, [], 7)
    # In arrival order, an older lock's turn that commits first is stored, and so is the newer one after it.
    other = await new_agent(store)
    older, newer = appended(other.id, 1, 6), appended(other.id, 3, 7)
    assert await asyncio.gather(store.append_turn(older), store.append_turn(newer)) == [None, None]
    assert await _stored(store, other.id) == ([m.id for m in older.messages + newer.messages], 2, [], 7)
    assert store.commit_pipelined == pipelined  # an agent twice in a batch: each in its own savepoint
