"""Which messages recall search holds, and repairing the index when it and the store disagree."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from memory.longterm import LongTermMemory, RecallRecord
from memory.models import Message
from memory.paging import id_pages, sorted_differences
from memory.store import ID_PAGE_SIZE, Store

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


def live_indexer(store: Store, longterm: LongTermMemory,
                 skip_tools: frozenset[str]) -> Callable[[list[Message]], None] | None:
    """Set up recall indexing of new messages; returns what to call with them once committed, or None.

    When the long-term memory lives in the store's database, the store writes the recall rows in the
    messages' own transaction (searchable by full text the moment the turn commits; nothing to repair
    after a crash), and the callback only adds vectors, when there is an embedder. Otherwise messages
    are handed to the long-term memory's write-behind queue after their commit.
    """
    if longterm.indexes_in_store_commit and store.index_recall_in_commit(skip_tools):
        if not longterm.vector_search:
            return None
    return lambda messages: index_messages(longterm, messages, skip_tools)


@dataclass
class Reconciliation:
    reindexed: int = 0
    orphan_messages: int = 0
    orphan_agents: int = 0

    @property
    def fixed(self) -> int:
        return self.reindexed + self.orphan_messages + self.orphan_agents

    def as_dict(self) -> dict[str, int]:
        return {"reindexed": self.reindexed, "orphan_messages": self.orphan_messages,
                "orphan_agents": self.orphan_agents}


async def reconcile(store: Store, longterm: LongTermMemory, skip_tools: frozenset[str],
                    batch: int = 2000, page: int = ID_PAGE_SIZE) -> Reconciliation:
    """Index what the store has and the index lacks; drop index rows whose message or agent is gone.

    Both sides are walked as sorted pages of `page` ids, so memory holds a page or two, never every id;
    missing messages are loaded `batch` at a time.
    """
    report = Reconciliation()
    index_agents = id_pages(lambda after, limit: longterm.agent_ids(after=after, limit=limit), page)
    store_agents = id_pages(lambda after, limit: store.agent_ids(after=after, limit=limit), page)
    async for gone, _ in sorted_differences(index_agents, store_agents):
        for agent_id in gone:
            await longterm.delete_agent(agent_id)
        report.orphan_agents += len(gone)
    skip = sorted(skip_tools)
    wanted = id_pages(lambda after, limit: store.recall_candidate_ids(skip, after=after, limit=limit), page)
    indexed = id_pages(lambda after, limit: longterm.recall_ids_all(after=after, limit=limit), page)
    reindexed = False
    async for missing, orphans in sorted_differences(wanted, indexed):
        for start in range(0, len(orphans), batch):
            report.orphan_messages += await _drop_orphans(store, longterm, orphans[start:start + batch], skip_tools)
        for start in range(0, len(missing), batch):
            messages = await store.get_messages(missing[start:start + batch])
            index_messages(longterm, messages, skip_tools, new=False)  # live indexing may have raced us
            report.reindexed += len(messages)
            reindexed = True
    if reindexed:
        await longterm.flush()
    return report


async def _drop_orphans(store: Store, longterm: LongTermMemory, ids: list[str], skip_tools: frozenset[str]) -> int:
    """Delete index rows whose message is gone or not worth finding; returns how many.

    Checked again against the store: a message committed and indexed after its store page was read is kept.
    """
    kept = {m.id for m in await store.get_messages(ids) if recall_record(m, skip_tools) is not None}
    doomed = [i for i in ids if i not in kept]
    if doomed:
        await longterm.delete_recall(doomed)
    return len(doomed)
