from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from memory.longterm.api import LongTermMemory
from memory.longterm import LanceLongTermMemory
from memory.models import new_id

UTC = timezone.utc

FACTS = [
    ("Deckard retired six replicants in the off-world colonies", ["replicant", "history"]),
    ("Nexus-6 replicants have a four-year lifespan", ["technical", "replicant"]),
    ("The Voight-Kampff test measures involuntary emotional responses", ["technical", "testing"]),
    ("The Tyrell Corporation motto is more human than human", ["company"]),
    ("Rachael has implanted memories from Tyrell's niece", ["replicant", "memory"]),
]


async def seed(lt: LongTermMemory, agent_id: str) -> dict[str, str]:
    passages = await lt.add_passages(agent_id, FACTS)
    return {p.text: p.id for p in passages}


async def test_insert_then_search_in_every_mode(lt: LongTermMemory, agent_id: str) -> None:
    ids = await seed(lt, agent_id)
    target = ids["Nexus-6 replicants have a four-year lifespan"]
    for mode in ("hybrid", "vector", "fts"):
        hits = await lt.search_passages(agent_id, "replicants lifespan", mode=mode)
        assert hits, mode
        assert hits[0].record.id == target, mode
        assert hits[0].search_mode == mode


async def test_hybrid_hits_carry_both_ranks_and_rrf(lt: LongTermMemory, agent_id: str) -> None:
    await seed(lt, agent_id)
    hits = await lt.search_passages(agent_id, "Voight-Kampff test", top_k=3)
    top = hits[0]
    assert top.record.text.startswith("The Voight-Kampff test")
    assert top.vector_rank == 1 and top.fts_rank == 1
    assert top.rrf_score == pytest.approx(2 / 61)
    assert [h.rrf_score for h in hits] == sorted((h.rrf_score for h in hits), reverse=True)
    assert len(hits) <= 3
    vector_only = await lt.search_passages(agent_id, "Voight-Kampff test", mode="vector")
    assert vector_only[0].fts_rank is None and vector_only[0].vector_rank == 1
    text_only = await lt.search_passages(agent_id, "Voight-Kampff test", mode="fts")
    assert text_only[0].vector_rank is None and text_only[0].fts_rank == 1
    assert text_only[0].rrf_score == pytest.approx(1 / 61)


async def test_tag_filters_any_and_all(lt: LongTermMemory, agent_id: str) -> None:
    await seed(lt, agent_id)
    any_hits = await lt.search_passages(agent_id, "replicants", tags=["technical", "company"], top_k=10)
    assert {h.record.text for h in any_hits} >= {FACTS[1][0], FACTS[2][0]}
    assert all(set(h.record.tags) & {"technical", "company"} for h in any_hits)
    all_hits = await lt.search_passages(
        agent_id, "replicants", tags=["technical", "replicant"], tag_match_mode="all", top_k=10
    )
    assert [h.record.text for h in all_hits] == [FACTS[1][0]]
    assert await lt.search_passages(agent_id, "replicants", tags=["no-such-tag"]) == []
    with pytest.raises(ValueError):
        await lt.search_passages(agent_id, "x", tags=["a"], tag_match_mode="some")


async def test_tags_with_quotes_are_literal(lt: LongTermMemory, agent_id: str) -> None:
    await lt.add_passages(agent_id, [("quoted tag row", ["o'neil"]), ("other row", ["x') OR (1=1"])])
    hits = await lt.search_passages(agent_id, "row", tags=["o'neil"])
    assert [h.record.tags for h in hits] == [["o'neil"]]
    hits = await lt.search_passages(agent_id, "row", tags=["') OR true OR ('"])
    assert hits == []


async def test_date_ranges(lt: LongTermMemory, agent_id: str) -> None:
    day = datetime(2025, 9, 29, tzinfo=UTC)
    await lt.add_passages(agent_id, [("meeting notes early morning", [])], created_at=day + timedelta(hours=1))
    late = day + timedelta(hours=23, minutes=59, seconds=30)
    await lt.add_passages(agent_id, [("meeting notes late evening", [])], created_at=late)
    await lt.add_passages(agent_id, [("meeting notes next day", [])], created_at=day + timedelta(days=1, hours=2))

    async def texts(**kw: object) -> set[str]:
        hits = await lt.search_passages(agent_id, "meeting notes", **kw)  # type: ignore[arg-type]
        return {h.record.text for h in hits}

    everything = {"meeting notes early morning", "meeting notes late evening", "meeting notes next day"}
    assert await texts() == everything
    # A date-only end includes the whole day, down to 23:59:30.
    assert await texts(end="2025-09-29") == {"meeting notes early morning", "meeting notes late evening"}
    assert await texts(end=date(2025, 9, 29)) == {"meeting notes early morning", "meeting notes late evening"}
    assert await texts(start="2025-09-30") == {"meeting notes next day"}
    assert await texts(start="2025-09-29T01:00:00Z", end="2025-09-29T01:00:00Z") == {"meeting notes early morning"}
    # Naive bounds are read in the agent's zone: 21:00 in New York on the 29th is 01:00 UTC on the 30th.
    assert await texts(start="2025-09-29T21:00:00", tz="America/New_York") == {"meeting notes next day"}
    # The 28th ends at 03:59:59 UTC on the 29th in New York, so the 01:00 UTC note is in it.
    assert await texts(end="2025-09-28", tz="America/New_York") == {"meeting notes early morning"}
    assert await texts(end="2025-09-29", tz="America/New_York") == everything


async def test_no_cross_agent_results(lt: LongTermMemory) -> None:
    alice, bob = new_id("agent"), new_id("agent")
    [a] = await lt.add_passages(alice, [("the secret launch code is tangerine", ["secret"])])
    [b] = await lt.add_passages(bob, [("the secret launch code is tangerine", ["secret"])])
    for mode in ("hybrid", "vector", "fts"):
        assert [h.record.id for h in await lt.search_passages(alice, "secret launch code", mode=mode)] == [a.id]
        assert [h.record.id for h in await lt.search_passages(bob, "secret launch code", mode=mode)] == [b.id]
    assert [h.record.id for h in await lt.search_passages(alice, "", tags=["secret"])] == [a.id]
    assert [p.id for p in await lt.list_passages(alice)] == [a.id]
    assert await lt.get_passage(alice, b.id) is None
    assert await lt.delete_passage(alice, b.id) is False
    assert await lt.get_passage(bob, b.id) is not None
    with pytest.raises(ValueError):
        await lt.search_passages(f"{alice}' OR agent_id != '", "secret")


async def test_text_only_mode_without_embedder(lt_text_only: LongTermMemory, agent_id: str) -> None:
    await seed(lt_text_only, agent_id)
    for mode in ("hybrid", "vector", "fts"):
        hits = await lt_text_only.search_passages(agent_id, "emotional responses test", mode=mode)
        assert hits[0].record.text == FACTS[2][0]
        assert hits[0].search_mode == "fts" and hits[0].vector_rank is None and hits[0].fts_rank == 1


async def test_fresh_rows_are_found_before_the_index_absorbs_them(lance_lt: LongTermMemory, agent_id: str) -> None:
    lt = lance_lt  # LanceDB internals below
    await seed(lt, agent_id)
    await lt.optimize()
    [fresh] = await lt.add_passages(agent_id, [("a zeppelin appeared over the harbour", [])])
    indices = {i.name: i for i in await lt._passages.table.list_indices()}
    assert indices["text_idx"].num_unindexed_rows >= 1  # not in the FTS index yet...
    hits = await lt.search_passages(agent_id, "zeppelin", mode="fts")
    assert [h.record.id for h in hits] == [fresh.id]  # ...and still found


async def test_list_get_count_tags_delete(lt: LongTermMemory, agent_id: str) -> None:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    made = []
    for i in range(7):
        when = base + timedelta(hours=i)
        made += await lt.add_passages(agent_id, [(f"note number {i}", [f"t{i % 3}"])], created_at=when)
    ids = [p.id for p in made]
    assert await lt.passage_figures(new_id("agent")) == (0, [])
    assert await lt.count_passages(agent_id) == 7
    assert await lt.passage_tags(agent_id) == ["t0", "t1", "t2"]
    assert await lt.passage_figures(agent_id) == (7, ["t0", "t1", "t2"])
    assert [p.id for p in await lt.list_passages(agent_id)] == ids
    assert [p.id for p in await lt.list_passages(agent_id, ascending=False)] == ids[::-1]
    assert [p.id for p in await lt.list_passages(agent_id, after=ids[1], limit=3)] == ids[2:5]
    assert [p.id for p in await lt.list_passages(agent_id, before=ids[5], limit=2)] == ids[3:5]
    assert [p.id for p in await lt.list_passages(agent_id, after=ids[5], ascending=False, limit=2)] == [ids[4], ids[3]]
    assert [p.id for p in await lt.list_passages(agent_id, after=ids[1], before=ids[4])] == ids[2:4]
    assert [p.text for p in await lt.list_passages(agent_id, search="NUMBER 3")] == ["note number 3"]
    assert await lt.list_passages(agent_id, search="100%") == []
    assert await lt.list_passages(agent_id, after=new_id("passage")) == []
    got = await lt.get_passage(agent_id, ids[0])
    assert got is not None and got.text == "note number 0" and got.tags == ["t0"] and got.created_at == base
    assert await lt.delete_passage(agent_id, ids[0]) is True
    assert await lt.delete_passage(agent_id, ids[0]) is False
    assert await lt.count_passages(agent_id) == 6
    assert await lt.passage_tags(agent_id) == ["t0", "t1", "t2"]
    assert await lt.delete_passage(agent_id, ids[3]) is True
    assert await lt.delete_passage(agent_id, ids[6]) is True
    assert await lt.passage_tags(agent_id) == ["t1", "t2"]
    assert await lt.passage_figures(agent_id) == (4, ["t1", "t2"])


async def test_paging_through_passages_with_equal_timestamps(lt: LongTermMemory, agent_id: str) -> None:
    made = await lt.add_passages(agent_id, [(f"same instant {i}", []) for i in range(5)])
    expected = sorted(p.id for p in made)  # equal created_at: ordered by id
    seen: list[str] = []
    cursor = None
    while True:
        page = await lt.list_passages(agent_id, after=cursor, limit=2)
        if not page:
            break
        seen += [p.id for p in page]
        cursor = page[-1].id
    assert seen == expected
    assert [p.id for p in await lt.list_passages(agent_id, before=expected[3], limit=10)] == expected[:3]


async def test_metadata_round_trips(lt: LongTermMemory, agent_id: str) -> None:
    [p] = await lt.add_passages(agent_id, [("with metadata", ["m"])], metadata={"source": "api", "n": 1})
    got = await lt.get_passage(agent_id, p.id)
    assert got is not None and got.metadata == {"source": "api", "n": 1}


async def test_empty_query_returns_newest_matching(lt: LongTermMemory, agent_id: str) -> None:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(3):
        await lt.add_passages(agent_id, [(f"entry {i}", ["x"])], created_at=base + timedelta(days=i))
    hits = await lt.search_passages(agent_id, "  ", top_k=2)
    assert [h.record.text for h in hits] == ["entry 2", "entry 1"]
    assert hits[0].search_mode == "recent"


async def test_many_batched_inserts_search_after_optimize(lance_lt: LongTermMemory, agent_id: str) -> None:
    lt = lance_lt  # LanceDB internals below
    other = new_id("agent")
    for batch in range(20):
        items = [(f"routine log entry {batch}-{i} about weather and traffic", ["log"]) for i in range(100)]
        await lt.add_passages(agent_id, items)
    await lt.add_passages(other, [("the marmalade recipe uses seville oranges", ["food"])])
    needle_text = "the marmalade recipe uses seville oranges and brown sugar"
    [needle] = await lt.add_passages(agent_id, [(needle_text, ["food"])])
    stats = await lt._passages.table.stats()
    assert stats["fragment_stats"]["num_fragments"] >= 20
    await lt.optimize()
    stats = await lt._passages.table.stats()
    assert stats["fragment_stats"]["num_fragments"] == 1
    assert await lt.count_passages(agent_id) == 2001
    for mode in ("hybrid", "vector", "fts"):
        hits = await lt.search_passages(agent_id, "marmalade seville oranges", mode=mode, top_k=5)
        assert hits[0].record.id == needle.id, mode
        assert all(h.record.agent_id == agent_id for h in hits)
    hits = await lt.search_passages(agent_id, "weather traffic 7-42", top_k=50, tags=["log"])
    assert len(hits) == 50 and all(h.record.tags == ["log"] for h in hits)


async def test_reopen_keeps_rows_and_vector_size(tmp_path: object, embedder: object, agent_id: str) -> None:
    path = str(tmp_path / "reopen")  # type: ignore[operator]
    first = LanceLongTermMemory(path, embedder)  # type: ignore[arg-type]
    await first.open()
    [p] = await first.add_passages(agent_id, [("persistent fact about lighthouses", [])])
    await first.close()
    second = LanceLongTermMemory(path, embedder)  # type: ignore[arg-type]
    await second.open()
    try:
        assert second._passages.dim == 32
        hits = await second.search_passages(agent_id, "lighthouses")
        assert hits[0].record.id == p.id and hits[0].vector_rank == 1 and hits[0].fts_rank == 1
    finally:
        await second.close()
