from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from memory.longterm.api import LongTermMemory
from memory.longterm import LanceLongTermMemory, RecallRecord
from memory.models import new_id

UTC = timezone.utc
BASE = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def message(agent_id: str, role: str, text: str, minutes: int = 0) -> RecallRecord:
    return RecallRecord(new_id("message"), agent_id, role, text, BASE + timedelta(minutes=minutes))


CHAT = [
    ("user", "I am planning a trip to Lisbon in May"),
    ("assistant", "Lisbon in May is lovely, expect warm weather"),
    ("user", "My sister is allergic to peanuts"),
    ("assistant", "Noted, I will remember the peanut allergy"),
    ("tool", "weather lookup returned sunny skies for Lisbon"),
]


async def test_enqueue_then_flush_makes_messages_searchable(lt: LongTermMemory, agent_id: str) -> None:
    records = [message(agent_id, role, text, i) for i, (role, text) in enumerate(CHAT)]
    lt.enqueue_messages(records)
    await lt.flush()
    for mode in ("hybrid", "vector", "fts"):
        hits = await lt.search_recall(agent_id, "peanut allergy", mode=mode)
        assert hits[0].record.id in {records[2].id, records[3].id}, mode
        assert hits[0].search_mode == mode
    hits = await lt.search_recall(agent_id, "Lisbon")
    assert {h.record.id for h in hits} >= {records[0].id, records[1].id, records[4].id}
    assert hits[0].vector_rank is not None and hits[0].fts_rank is not None and hits[0].rrf_score > 0
    assert await lt.recall_ids(agent_id) == {r.id for r in records}


async def test_searchable_within_a_second_without_flush(lt: LongTermMemory, agent_id: str) -> None:
    lt.start_background()
    # Warm the table up first so this measures the queue, not table creation.
    lt.enqueue_messages([message(agent_id, "user", "hello there")])
    await lt.flush()
    record = message(agent_id, "user", "the quokka is my favourite animal")
    started = time.monotonic()
    lt.enqueue_messages([record])
    found = False
    while time.monotonic() - started < 2.0:
        if [h.record.id for h in await lt.search_recall(agent_id, "quokka", mode="fts")] == [record.id]:
            found = True
            break
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    assert found and elapsed < 1.0, elapsed


async def test_roles_filter(lt: LongTermMemory, agent_id: str) -> None:
    lt.enqueue_messages([message(agent_id, role, text, i) for i, (role, text) in enumerate(CHAT)])
    await lt.flush()
    hits = await lt.search_recall(agent_id, "Lisbon", roles=["assistant"])
    assert {h.record.role for h in hits} == {"assistant"}
    assert hits[0].record.text == "Lisbon in May is lovely, expect warm weather"
    hits = await lt.search_recall(agent_id, "Lisbon", roles=["assistant"], mode="fts")
    assert [h.record.text for h in hits] == ["Lisbon in May is lovely, expect warm weather"]
    hits = await lt.search_recall(agent_id, "Lisbon", roles=["user", "tool"], limit=10)
    assert {h.record.role for h in hits} == {"user", "tool"}
    with pytest.raises(ValueError):
        await lt.search_recall(agent_id, "Lisbon", roles=["user') OR ('1'='1"])


async def test_recall_dates_and_limit(lt: LongTermMemory, agent_id: str) -> None:
    lt.enqueue_messages([message(agent_id, "user", f"daily standup note {d}", d * 24 * 60) for d in range(5)])
    await lt.flush()
    hits = await lt.search_recall(agent_id, "standup", start="2025-03-11", end="2025-03-12", limit=10)
    assert sorted(h.record.text for h in hits) == ["daily standup note 1", "daily standup note 2"]
    assert len(await lt.search_recall(agent_id, "standup", limit=3)) == 3
    # No query: the newest messages in the range.
    hits = await lt.search_recall(agent_id, "", end="2025-03-12", limit=2)
    assert [h.record.text for h in hits] == ["daily standup note 2", "daily standup note 1"]


async def test_re_enqueueing_a_message_replaces_it(lt: LongTermMemory, agent_id: str) -> None:
    record = message(agent_id, "assistant", "draft answer about volcanoes")
    lt.enqueue_messages([record])
    await lt.flush()
    edited = RecallRecord(record.id, agent_id, "assistant", "final answer about glaciers", record.created_at)
    lt.enqueue_messages([edited])
    await lt.flush()
    assert await lt.search_recall(agent_id, "volcanoes", mode="fts") == []
    hits = await lt.search_recall(agent_id, "glaciers")
    assert [h.record.id for h in hits] == [record.id] and hits[0].vector_rank == 1
    assert await lt.recall_ids(agent_id) == {record.id}


async def test_no_cross_agent_recall(lt: LongTermMemory) -> None:
    alice, bob = new_id("agent"), new_id("agent")
    a, b = message(alice, "user", "my password hint is pelican"), message(bob, "user", "my password hint is pelican")
    lt.enqueue_messages([a, b])
    await lt.flush()
    for mode in ("hybrid", "vector", "fts"):
        assert [h.record.id for h in await lt.search_recall(alice, "password hint", mode=mode)] == [a.id]
        assert [h.record.id for h in await lt.search_recall(bob, "password hint", mode=mode)] == [b.id]


async def test_delete_recall_and_queued(lt: LongTermMemory, agent_id: str) -> None:
    written, queued, kept = (message(agent_id, "user", f"ephemeral line {i}", i) for i in range(3))
    lt.enqueue_messages([written, kept])
    await lt.flush()
    lt.enqueue_messages([queued])
    await lt.delete_recall([written.id, queued.id])
    await lt.flush()
    assert await lt.recall_ids(agent_id) == {kept.id}
    assert [h.record.id for h in await lt.search_recall(agent_id, "ephemeral line", mode="fts")] == [kept.id]


async def test_delete_agent_drops_everything_of_that_agent_only(lt: LongTermMemory) -> None:
    doomed, survivor = new_id("agent"), new_id("agent")
    for agent in (doomed, survivor):
        await lt.add_passages(agent, [("archived fact about comets", ["space"])])
        lt.enqueue_messages([message(agent, "user", "we talked about comets")])
    await lt.flush()
    lt.enqueue_messages([message(doomed, "user", "a late comet message still queued")])
    assert await lt.count_passages(doomed) == 1
    await lt.delete_agent(doomed)
    await lt.flush()
    assert await lt.count_passages(doomed) == 0
    assert await lt.search_passages(doomed, "comets") == []
    assert await lt.search_recall(doomed, "comets") == []
    assert await lt.recall_ids(doomed) == set()
    assert await lt.count_passages(survivor) == 1
    assert len(await lt.search_recall(survivor, "comets")) == 1
    assert await lt.agent_ids() == [survivor]


async def test_close_writes_queued_messages(tmp_path: object, embedder: object, agent_id: str) -> None:
    path = str(tmp_path / "close")  # type: ignore[operator]
    first = LanceLongTermMemory(path, embedder)  # type: ignore[arg-type]
    await first.open()
    first.start_background()
    record = message(agent_id, "user", "remember the narwhal")
    first.enqueue_messages([record])
    await first.close()
    second = LanceLongTermMemory(path, embedder)  # type: ignore[arg-type]
    await second.open()
    try:
        assert [h.record.id for h in await second.search_recall(agent_id, "narwhal")] == [record.id]
        assert await second.recall_ids_all() == [record.id]
    finally:
        await second.close()


async def test_invalid_ids_are_rejected(lt: LongTermMemory, agent_id: str) -> None:
    with pytest.raises(ValueError):
        lt.enqueue_messages([RecallRecord("message-1", agent_id, "user", "x", BASE)])
    with pytest.raises(ValueError):
        await lt.add_passages("agent-' OR 1=1 --", [("x", [])])


async def test_id_scans_come_in_ascending_keyset_pages(lt: LongTermMemory) -> None:
    assert await lt.agent_ids() == [] and await lt.recall_ids_all() == []  # no table yet
    agents = sorted(new_id("agent") for _ in range(5))
    records = [message(agent, "user", f"note {i}") for agent in agents for i in range(3)]
    lt.enqueue_messages(records)
    await lt.add_passages(agents[0], [("only a passage", [])])
    await lt.flush()
    ids = sorted(r.id for r in records)
    assert await lt.recall_ids_all(limit=4) == ids[:4]
    assert await lt.recall_ids_all(after=ids[3], limit=4) == ids[4:8]
    assert await lt.recall_ids_all(after=ids[-1]) == []
    # Each agent has several rows in two tables, yet appears once per scan.
    assert await lt.agent_ids(limit=1) == agents[:1]  # more distinct ids than the page: trimmed as it scans
    assert await lt.agent_ids(limit=2) == agents[:2]
    assert await lt.agent_ids(after=agents[1], limit=2) == agents[2:4]
    assert await lt.agent_ids(after=agents[3]) == agents[4:]
    assert await lt.agent_ids(limit=1000) == agents


@pytest.mark.parametrize("embedded", [False, True])
async def test_a_busy_half_second_is_one_recall_write_without_an_embedder(
        tmp_path: object, embedder: object, agent_id: str, embedded: bool) -> None:
    """Each LanceDB write is a table version (and a fragment to fold in later): a drain of 600 queued messages
    writes them at once when nothing is embedded; with an embedder, in batches one embedding call can finish."""
    import lancedb  # the table's versions, read as any LanceDB reader would

    path = str(tmp_path / "versions")  # type: ignore[operator]
    lt = LanceLongTermMemory(path, embedder if embedded else None)  # type: ignore[arg-type]
    await lt.open()
    try:
        lt.enqueue_messages([message(agent_id, "user", "the table exists from here")])
        await lt.flush()
        before = lancedb.connect(path).open_table("recall").version
        records = [message(agent_id, "user", f"note {i} about the otter", i) for i in range(600)]
        lt.enqueue_messages(records)
        await lt.flush()
        versions = lancedb.connect(path).open_table("recall").version - before
        assert versions == (3 if embedded else 1)
        assert await lt.recall_ids(agent_id) >= {r.id for r in records}
    finally:
        await lt.close()
