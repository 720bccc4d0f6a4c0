"""What loading an agent reads of its in-context history: all of it, or only what followed a stale copy of it.

A copy another process's turns made stale is brought up to date with the messages stored after its last seq,
when the agent's history was only appended to since the copy was read. The store counts every other write of an
agent's messages (a summary and its evictions, a reset, an import, a turn's own evictions) as a reshape
(`Store.history_since`); stored messages never change otherwise. An unchanged count then says the history up to
the copy's last seq is still exactly the copy's, and a reload costs what was added, not the history.
"""

from __future__ import annotations

from dataclasses import dataclass

from memory.live import LiveAgent
from memory.models import Message
from memory.protocols import Store


@dataclass(slots=True)
class History:
    """An agent's in-context messages as loaded, with what its `LiveAgent` is built from."""

    messages: list[Message]  # by seq, the running summary first
    next_seq: int
    recall_count: int  # all its stored messages
    reshapes: int  # the store's count it was read at
    refreshed: bool  # a stale copy was kept and only what followed it read


async def in_context_history(store: Store, agent_id: str, stale: LiveAgent | None) -> History:
    """The agent's history: `stale` (a copy holding only stored messages, or None) brought up to date if the
    store's history only grew since it was read, else read whole."""
    if stale is not None and stale.reshapes is not None:
        top = stale.next_seq - 1
        tail = await store.history_since(agent_id, top)
        if tail.reshapes == stale.reshapes:
            return History(_summary_first([*stale.messages, *tail.new], tail.new), max(tail.top, top) + 1,
                           stale.recall_count + tail.added, tail.reshapes, True)
    tail = await store.history_since(agent_id, 0)
    return History(_summary_first(tail.new, tail.new), tail.top + 1, tail.added, tail.reshapes, False)


def _summary_first(messages: list[Message], new: list[Message]) -> list[Message]:
    if any(m.metadata.get("kind") == "summary" for m in new):
        # The running summary (a system message) always leads the in-context history.
        messages.sort(key=lambda m: (m.metadata.get("kind") != "summary", m.seq))
    return messages
