"""LanceDB's caches stay under the size memproxy gives them, however many versions writes and compactions make."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from memory.longterm import RecallRecord
from memory.longterm.index import LanceLongTermMemory
from memory.models import new_id

CAP = 256 * 1024


async def test_cache_stays_under_its_cap_across_many_versions(tmp_path: Any) -> None:
    capped = LanceLongTermMemory(str(tmp_path / "capped"), None, cache_bytes=CAP)
    free = LanceLongTermMemory(str(tmp_path / "free"), None)  # LanceDB's defaults: gigabytes
    agent_id = new_id("agent")
    for lt in (capped, free):
        await lt.open()
    try:
        for round_ in range(30):  # every write and every compaction is a new table version
            records = [RecallRecord(new_id("message"), agent_id, "user", f"round {round_} message {i} about kites",
                                    datetime.now(timezone.utc)) for i in range(20)]
            for lt in (capped, free):
                lt.enqueue_messages(records, new=True)
                await lt.flush()
                await lt.add_passages(agent_id, [(f"passage {round_} on kites", ["kite"])])
                if round_ % 5 == 4:
                    await lt.optimize()
                assert await lt.search_recall(agent_id, "kites", limit=3, mode="fts")
        assert free.cache_bytes > 2 * CAP  # what piles up without a cap
        assert capped.cache_bytes <= CAP * 1.1  # approximate LRU accounting: a little over, never a pile
        assert len(await capped.search_passages(agent_id, "kites", top_k=50, mode="fts")) == 30
    finally:
        for lt in (capped, free):
            await lt.close()
