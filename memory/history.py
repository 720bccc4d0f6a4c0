"""What loading an agent reads of its in-context history: all of it, or only what followed a stale copy of it.

A copy another process's turns made stale is brought up to date with the messages stored after its last one,
when the store's in-context history up to that one is still exactly the copy's. Stored messages never change
(every message write is an insert; only `in_context` goes from true to false), so appends alone leave that part
as it was, and a summary or a reset elsewhere changes it. Then a reload costs what was added, not the history.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

from memory.models import HistoryTail, Message
from memory.protocols import Store

_seq = operator.attrgetter("seq")


def seq_fingerprint(seqs: Sequence[int]) -> tuple[int, int, int]:
    """(how many, their sum, the sum of their squares): equal for two sets of an agent's message seqs when they
    are the same set, short of a contrived swap (a seq is one message of its agent)."""
    return len(seqs), sum(seqs), sum(map(operator.mul, seqs, seqs))


async def in_context_history(store: Store, agent_id: str, kept: list[Message]
                             ) -> tuple[list[Message], HistoryTail, bool]:
    """The agent's in-context messages (its running summary first), the store's figures, and whether `kept` (a
    stale copy's messages, or none) was kept and only what followed it read."""
    seqs = list(map(_seq, kept))
    tail = await store.history_since(agent_id, max(seqs, default=0))
    if kept and tail.kept != seq_fingerprint(seqs):
        kept = []
        tail = await store.history_since(agent_id, 0)
    messages = [*kept, *tail.new]
    if any(m.metadata.get("kind") == "summary" for m in tail.new):
        # The running summary (a system message) always leads the in-context history.
        messages.sort(key=lambda m: (m.metadata.get("kind") != "summary", m.seq))
    return messages, tail, bool(kept)
