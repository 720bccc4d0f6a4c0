"""The reads of an agent's load, made at once: its record and blocks, its in-context history, its archival figures.

None of the three needs another's answer, so a load waits for the slowest of them, not for their sum: with the
store across a network, one round trip instead of six (the blocks are read beside the record: those a stale copy
names, else those attached to the agent). Each read is still its own snapshot, as when they ran one after
another; a load in several processes starts them only after reading the agent's version, so each sees at least
every write of that version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, overload

from memory.protocols import ArchivalStats

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


@overload
async def concurrently(a: Awaitable[A], b: Awaitable[B], /) -> tuple[A, B]: ...
@overload
async def concurrently(a: Awaitable[A], b: Awaitable[B], c: Awaitable[C], /) -> tuple[A, B, C]: ...
async def concurrently(*reads: Awaitable[Any]) -> tuple[Any, ...]:
    """Await all at once. If any fails, wait for the others (no read is left running with nobody to hear how it
    ends, and no connection is handed back mid-query) and raise the first failure as it was."""
    outcomes = await asyncio.gather(*reads, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return tuple(outcomes)


async def archival_figures(archival: ArchivalStats | None, agent_id: str) -> tuple[int, tuple[str, ...]] | None:
    """The agent's passage count and sorted tags (None without archival memory)."""
    if archival is None:
        return None
    count, tags = await archival.passage_figures(agent_id)
    return count, tuple(tags)
