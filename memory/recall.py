"""Which messages recall search holds, and repairing the index when it and the store disagree."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

from memory.longterm import LongTermMemory, RecallRecord
from memory.models import Message
from memory.store import Store

log = logging.getLogger("memproxy.recall")


def recall_record(message: Message, skip_tools: frozenset[str]) -> RecallRecord | None:
    """The index row for a message, or None when it is not worth finding (empty, summary, own-tool echo)."""
    if not message.content:
        return None
    if message.role in ("user", "assistant") or (message.role == "tool" and (message.name or "") not in skip_tools):
        return RecallRecord(id=message.id, agent_id=message.agent_id, role=message.role, text=message.content,
                            created_at=message.created_at)
    return None


def index_messages(longterm: LongTermMemory, messages: Iterable[Message], skip_tools: frozenset[str],
                   *, new: bool = True) -> None:
    records = [r for r in (recall_record(m, skip_tools) for m in messages) if r is not None]
    if records:
        longterm.enqueue_messages(records, new=new)


@dataclass
class Reconciliation:
    reindexed: int = 0
    orphan_messages: int = 0
    orphan_agents: int = 0

    @property
    def fixed(self) -> int:
        return self.reindexed + self.orphan_messages + self.orphan_agents

    def as_dict(self) -> dict[str, Any]:
        return {"reindexed": self.reindexed, "orphan_messages": self.orphan_messages,
                "orphan_agents": self.orphan_agents}


async def reconcile(store: Store, longterm: LongTermMemory, skip_tools: frozenset[str],
                    batch: int = 2000) -> Reconciliation:
    """Index what the store has and the index lacks; drop index rows whose message or agent is gone."""
    report = Reconciliation()
    agents = await store.agent_ids()
    for agent_id in await longterm.agent_ids() - agents:
        await longterm.delete_agent(agent_id)
        report.orphan_agents += 1
    wanted = await store.recall_candidate_ids(sorted(skip_tools))
    indexed = await longterm.recall_ids_all()
    orphans = indexed - wanted
    if orphans:
        await longterm.delete_recall(orphans)
        report.orphan_messages = len(orphans)
    missing = sorted(wanted - indexed)
    for start in range(0, len(missing), batch):
        messages = await store.get_messages(missing[start:start + batch])
        index_messages(longterm, messages, skip_tools, new=False)  # live indexing may have raced us
        report.reindexed += len(messages)
    if missing:
        await longterm.flush()
    return report
