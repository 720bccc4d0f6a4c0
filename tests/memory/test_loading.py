"""The reads of an agent's load run at once (`memory.loading.concurrently`): all of them end before it does."""

from __future__ import annotations

import asyncio

import pytest

from memory.loading import concurrently


async def test_reads_run_at_once_and_come_back_in_order() -> None:
    started: list[str] = []

    async def read(name: str, delay: float) -> str:
        started.append(name)
        await asyncio.sleep(delay)
        return name

    assert await concurrently(read("record", 0.05), read("history", 0.0), read("archival", 0.02)) == (
        "record", "history", "archival")
    assert started == ["record", "history", "archival"]  # each began before any ended


async def test_a_failed_read_is_raised_as_it_was_after_the_others_ended() -> None:
    ended: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(0.05)
        ended.append("slow")
        return "slow"

    async def broken(message: str, delay: float) -> str:
        await asyncio.sleep(delay)
        ended.append(message)
        raise ConnectionResetError(message)

    with pytest.raises(ConnectionResetError, match="first"):
        await concurrently(broken("first", 0.0), slow(), broken("second", 0.01))
    # Nothing is left running (holding a pooled connection, or failing later with nobody to hear it).
    assert sorted(ended) == ["first", "second", "slow"]
    assert asyncio.all_tasks() == {asyncio.current_task()}
