from __future__ import annotations

import json
from datetime import datetime, timezone

from memory.longterm.api import LongTermMemory
from memory.longterm import LanceLongTermMemory, RecallRecord
from memory.longterm.format import archival_results, format_archival_search, format_conversation_search
from memory.longterm.records import Passage, SearchHit
from memory.models import new_id

UTC = timezone.utc


def test_archival_format_matches_letta_shape() -> None:
    passage = Passage(new_id("passage"), new_id("agent"), "Nexus-6 lifespan is four years", ["technical"],
                      datetime(2025, 9, 29, 14, 3, 11, tzinfo=UTC))
    hits = [SearchHit(passage, 2 / 61, vector_rank=1, fts_rank=1), SearchHit(passage, 1 / 62, vector_rank=2)]
    data = json.loads(format_archival_search(hits))
    assert data[0] == {
        "timestamp": "2025-09-29 14:03:11 UTC",
        "content": "Nexus-6 lifespan is four years",
        "tags": ["technical"],
        "relevance": {"rrf_score": round(2 / 61, 6), "vector_rank": 1, "fts_rank": 1},
    }
    assert data[1]["relevance"] == {"rrf_score": round(1 / 62, 6), "vector_rank": 2}  # absent ranks left out
    assert archival_results(hits, tz="America/New_York")[0]["timestamp"] == "2025-09-29 10:03:11 EDT"
    assert format_archival_search([]) == "[]"


def test_conversation_format_matches_letta_shape() -> None:
    when = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    record = RecallRecord(new_id("message"), new_id("agent"), "user", "I love the café", when)
    now = datetime(2025, 3, 10, 15, 30, tzinfo=UTC)
    text = format_conversation_search([SearchHit(record, 1 / 61, fts_rank=1, search_mode="fts")], now=now)
    prefix = "Showing 1 results: "
    assert text.startswith(prefix)
    [item] = json.loads(text[len(prefix):])
    assert item == {
        "timestamp": "2025-03-10T12:00:00+00:00",
        "time_ago": "3h ago",
        "role": "user",
        "relevance": {"rrf_score": round(1 / 61, 6), "fts_rank": 1, "search_mode": "fts"},
        "content": "I love the café",
    }
    assert format_conversation_search([]) == "No results found."
    recent = format_conversation_search([SearchHit(record, 0.0, search_mode="recent")], tz="Asia/Tokyo", now=now)
    [item] = json.loads(recent[len(prefix):])
    assert item["timestamp"] == "2025-03-10T21:00:00+09:00" and item["relevance"] == {"search_mode": "recent"}


async def test_formatting_real_search_results(lt: LongTermMemory) -> None:
    agent_id = new_id("agent")
    await lt.add_passages(agent_id, [("the lighthouse keeper feeds the cats", ["lighthouse"])])
    data = json.loads(format_archival_search(await lt.search_passages(agent_id, "lighthouse cats")))
    assert data[0]["content"] == "the lighthouse keeper feeds the cats"
    assert data[0]["relevance"]["vector_rank"] == 1 and data[0]["relevance"]["fts_rank"] == 1
