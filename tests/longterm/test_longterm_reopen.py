"""Reopening the search tables lets go of readers of replaced index versions, and loses no row.

LanceDB's session keeps an open reader (a file handle and its buffers) of every full-text index version a
compaction replaced; they pile up with the compactions. `reopen` swaps in a fresh session and connection.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from datetime import datetime, timezone
from typing import Any

import pytest

from memory.longterm import RecallRecord
from memory.longterm.index import LanceLongTermMemory
from memory.models import new_id

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts open files in /proc/self/fd")


def index_files_open(root: str) -> int:
    """Open file descriptors of this process on index files under `root` (deleted ones too)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(root) and "/_indices/" in target
    return count


ROWS = 1500  # an index this size is read through an open file; a tiny one is read whole and closed


def records(agent_id: str, round_: int) -> list[RecallRecord]:
    # Many distinct words, so the full-text index is big enough to be kept open.
    return [RecallRecord(new_id("message"), agent_id, "user",
                         f"kites round{round_} " + " ".join(f"w{(i * 7919 + k * 104729) % 20011}" for k in range(10)),
                         datetime.now(timezone.utc)) for i in range(ROWS)]


async def test_reopen_drops_readers_of_replaced_indexes_and_keeps_every_row(tmp_path: Any) -> None:
    root = str(tmp_path / "lance")
    lt = LanceLongTermMemory(root, None, reopen_interval=0)  # 0: only the explicit reopen below
    agent_id = new_id("agent")
    await lt.open()
    try:
        for round_ in range(5):  # each round: a write, a compaction (a new FTS index version), a search
            lt.enqueue_messages(records(agent_id, round_), new=True)
            await lt.flush()
            await lt.optimize()
            assert await lt.search_recall(agent_id, f"round{round_}", limit=5, mode="fts")
        piled = index_files_open(root)
        assert piled >= 6  # readers of replaced index versions, held by the session

        # A write racing the reopen: it lands on one connection or the other, never nowhere.
        lt.enqueue_messages(records(agent_id, 99), new=True)
        await asyncio.gather(lt.reopen(), lt.flush())
        gc.collect()
        await asyncio.sleep(0)
        assert index_files_open(root) < piled // 2

        for round_ in (*range(5), 99):  # every row of every round, the racing write included
            assert await lt._recall.count(f"text LIKE 'kites round{round_} %'") == ROWS
            assert await lt.search_recall(agent_id, f"round{round_}", limit=5, mode="fts")
        lt.enqueue_messages(records(agent_id, 100), new=True)  # and the new connection takes writes
        await lt.flush()
        assert await lt._recall.count("true") == 7 * ROWS
    finally:
        await lt.close()


async def test_maintenance_reopens_after_a_compaction_once_the_interval_passed(tmp_path: Any) -> None:
    lt = LanceLongTermMemory(str(tmp_path / "lance"), None, optimize_interval=0.05, reopen_interval=0.05)
    agent_id = new_id("agent")
    await lt.open()
    lt.start_background()
    try:
        first = lt._db
        lt.enqueue_messages(records(agent_id, 0), new=True)
        await lt.flush()
        for _ in range(200):  # the maintenance loop wakes every 50 ms; give it up to 10 s on a loaded machine
            if lt._db is not first:
                break
            await asyncio.sleep(0.05)
        assert lt._db is not first
        assert len(await lt.search_recall(agent_id, "round0", limit=10, mode="fts")) == 10
    finally:
        await lt.close()
