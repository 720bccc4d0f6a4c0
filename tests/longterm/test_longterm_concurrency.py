"""Writes, deletes and searches while the background loop compacts underneath them."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from memory.longterm import LanceLongTermMemory, RecallRecord
from memory.models import new_id


async def test_writes_and_searches_during_background_optimize(tmp_path: Any, embedder: Any) -> None:
    lt = LanceLongTermMemory(str(tmp_path / "busy"), embedder, recall_interval=0.01, optimize_interval=0.05)
    await lt.open()
    lt.start_background()
    agent_id = new_id("agent")
    kept: list[str] = []
    try:

        async def archive() -> None:
            for i in range(40):
                items = [(f"busy passage {i} about kites", ["kite"]), (f"doomed {i}", [])]
                made = await lt.add_passages(agent_id, items)
                kept.append(made[0].id)
                assert await lt.delete_passage(agent_id, made[1].id)
                await asyncio.sleep(0.005)

        async def chat() -> None:
            for i in range(40):
                now = datetime.now(timezone.utc)
                lt.enqueue_messages([RecallRecord(new_id("message"), agent_id, "user", f"chat {i} about kites", now)])
                await asyncio.sleep(0.005)

        async def search() -> None:
            for _ in range(40):
                for hit in await lt.search_passages(agent_id, "kites", top_k=5):
                    assert hit.record.agent_id == agent_id
                await asyncio.sleep(0.005)

        await asyncio.gather(archive(), chat(), search())
        await lt.flush()
        await lt.optimize()
        assert await lt.count_passages(agent_id) == 40
        assert {p.id for p in await lt.list_passages(agent_id, limit=None)} == set(kept)
        assert len(await lt.recall_ids(agent_id)) == 40
        assert len(await lt.search_recall(agent_id, "kites", limit=100, mode="fts")) == 40
    finally:
        await lt.close()
