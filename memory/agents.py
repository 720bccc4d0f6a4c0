"""Live agent state: the store's agents, blocks and in-context messages held in memory for the hot path.

Every write goes through `AgentMemory`, so the cache and the compiled system prompt are invalidated
exactly when something they depend on changes, and never otherwise (upstream prompt caches rely on a
byte-stable prefix).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo
from typing import Any, Callable

from memory.live import LiveAgent
from memory.history import in_context_history
from memory.loading import archival_figures, concurrently
from memory.models import Agent, Block, Changes, Message, new_id, utcnow
from memory.protocols import ArchivalStats, Coherence, Store

__all__ = ["AgentMemory", "LiveAgent"]

log = logging.getLogger("memproxy.memory")


class AgentMemory:
    """Cache of live agents over a `Store`; the only writer of agents, blocks and messages.

    With several processes on one store (`coherence.shared`), every write that changes what an agent's
    next turn sees bumps that agent's version for all of them: a process whose cached copy is older
    reloads it at its next turn lease (and drops it as soon as the change is announced).
    """

    def __init__(self, store: Store, *, archival: ArchivalStats | None = None, capacity: int = 20000,
                 today: Callable[[str], date] | None = None) -> None:
        self.store = store
        store.on_rejected = self.forget  # a turn the tables refused after all: reload that agent from them
        self.archival = archival
        self.capacity = capacity
        self._today = today or (lambda zone: datetime.now(ZoneInfo(zone)).date())
        self._agents: OrderedDict[str, LiveAgent] = OrderedDict()
        # Copies another process's write made stale, kept until their agent's next load brings them up to date
        # (`_load`); they count against `capacity` with the live ones.
        self._stale: OrderedDict[str, LiveAgent] = OrderedDict()
        self._loading: dict[str, asyncio.Future[LiveAgent | None]] = {}
        self._blocks: dict[str, Block] = {}
        self._block_users: dict[str, set[str]] = {}
        self._unsettled: dict[str, set[asyncio.Task[None]]] = {}
        self.coherence: Coherence | None = None
        self.hits = 0  # `get` answered from the cache
        self.loads = 0  # `get` had to read the store
        self.refreshes = 0  # of those, loads that kept a stale copy's history and read only what followed it
        self.version_reads = 0  # of those, loads that read the agent's version first (several processes)

    # --- loading ----------------------------------------------------------------------------
    async def get(self, agent_id: str, *, version: int | None = None) -> LiveAgent | None:
        live = self._agents.get(agent_id)
        if live is not None:
            self.hits += 1
            self._agents.move_to_end(agent_id)
            return live
        self.loads += 1
        pending = self._loading.get(agent_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[LiveAgent | None] = asyncio.get_running_loop().create_future()
        self._loading[agent_id] = future
        try:
            live = await self._load(agent_id, version)
            future.set_result(live)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved; the caller sees the raise below
            raise
        finally:
            del self._loading[agent_id]
        return live

    async def _load(self, agent_id: str, version: int | None = None) -> LiveAgent | None:
        stale = self._stale.pop(agent_id, None)
        # Several processes: a version known before the store is read (the lease's, the one announced since a stale
        # copy was dropped, or else read now) is one the copy holds every write of: a version is bumped and announced
        # after its commit. A turn leased at it uses the copy (fleet.py `current`) instead of loading it again.
        version = version if version is not None or stale is None else stale.announced
        if version is None and self.shared and self.coherence is not None:
            self.version_reads += 1
            version = await self.coherence.version(agent_id)
        record, history, figures = await concurrently(self._record(agent_id, stale),
                                                      in_context_history(self.store, agent_id, stale),
                                                      archival_figures(self.archival, agent_id))
        if record is None:
            return None
        agent, blocks = record
        self.refreshes += history.refreshed
        live = LiveAgent(agent=agent, blocks=blocks, messages=history.messages, next_seq=history.next_seq,
                         recall_count=history.recall_count, version=version, reshapes=history.reshapes)
        if stale is not None:
            # Its encodings and counts are by message id, and a stored message never changes: whatever of them is
            # still in context is not encoded or counted again (InContext notices a reshaped list by itself).
            live.in_context = stale.in_context
        if figures is not None:
            live.archival_count, live.archival_tags = figures
        self._remember(live)
        return live

    async def _record(self, agent_id: str, stale: LiveAgent | None) -> tuple[Agent, list[Block]] | None:
        # The blocks are read with the record, not after it: a stale copy's (most likely still the agent's, and
        # only those not cached), else those attached as of this read. Whatever the record names is what counts.
        blocks = (self.store.get_blocks([b for b in stale.agent.block_ids if b not in self._blocks])
                  if stale is not None else self.store.attached_blocks(agent_id))
        agent, ahead = await concurrently(self.store.get_agent(agent_id), blocks)
        return None if agent is None else (agent, await self._shared_blocks(agent.block_ids, ahead))

    async def _shared_blocks(self, block_ids: list[str], ahead: list[Block] | None = None) -> list[Block]:
        missing = [b for b in block_ids if b not in self._blocks]
        found = {block.id: block for block in ahead or () if block.id in missing}
        rest = [b for b in missing if b not in found]
        for block in [*found.values(), *(await self.store.get_blocks(rest) if rest else ())]:
            self._blocks.setdefault(block.id, block)
        return [self._blocks[b] for b in block_ids if b in self._blocks]

    def _remember(self, live: LiveAgent) -> None:
        self._agents[live.id] = live
        for block in live.blocks:
            self._block_users.setdefault(block.id, set()).add(live.id)
        self._trim()

    def _trim(self) -> None:
        """Stale copies go first, then the least recently used live agents, down to `capacity` in all."""
        while self._stale and len(self._agents) + len(self._stale) > self.capacity:
            self._stale.popitem(last=False)
        while len(self._agents) > self.capacity:
            _, old = self._agents.popitem(last=False)
            self._forget_blocks(old)

    def _forget_blocks(self, live: LiveAgent) -> None:
        for block in live.blocks:
            users = self._block_users.get(block.id)
            if users is not None:
                users.discard(live.id)
                if not users:
                    del self._block_users[block.id]
                    self._blocks.pop(block.id, None)

    def peek(self, agent_id: str) -> LiveAgent | None:
        """The cached agent, if any, without loading it."""
        return self._agents.get(agent_id)

    def forget(self, agent_id: str, *, stale: bool = False) -> None:
        """Drop an agent from the cache (the next `get` reloads it from the store).

        `stale`: the copy holds only stored messages and another process has added to them since; it is kept for
        the next load to bring up to date. (A copy that may hold a message its turn failed to store is not.)
        """
        live = self._agents.pop(agent_id, None)
        if live is not None:
            self._forget_blocks(live)
        if stale and live is not None:
            self._stale[agent_id] = live
            self._trim()
        elif not stale:
            self._stale.pop(agent_id, None)

    async def memory_figures(self) -> dict[str, float]:
        """Live agents, their in-context messages and shared blocks held (for the memory report)."""
        return {"agents": len(self._agents), "agent_messages": sum(len(a.messages) for a in self._agents.values()),
                "stale_agents": len(self._stale), "blocks": len(self._blocks)}

    async def refresh_archival(self, live: LiveAgent) -> None:
        """After an archival write: the figures in the prompt, re-read, and other processes told if they changed."""
        figures = await archival_figures(self.archival, live.id)
        if figures is not None and figures != (live.archival_count, live.archival_tags):
            live.archival_count, live.archival_tags = figures
            live.invalidate_prompt()
            await self.announce([live.id])

    # --- coherence across processes -----------------------------------------------------------
    @property
    def shared(self) -> bool:
        return self.coherence is not None and self.coherence.shared

    async def announce(self, agent_ids: list[str]) -> None:
        """After a commit: bump the agents' versions everywhere; keep our copies only if they were current."""
        if self.coherence is None or not self.coherence.shared or not agent_ids:
            return
        self.apply_bumps(agent_ids, await self.coherence.changed(agent_ids))

    def apply_bumps(self, agent_ids: list[str], bumped: list[tuple[str, int | None, int]]) -> None:
        """Our copy was at the version before the bump (and holds our write): it is at the new one now.

        Otherwise another process wrote too (or the bump failed): reload at the next lease.
        """
        by_agent = {agent: (old, new) for agent, old, new in bumped}
        for agent_id in agent_ids:
            live = self._agents.get(agent_id)
            if live is None:
                continue
            seen = by_agent.get(agent_id)
            if seen is not None and live.version is not None and seen[0] == live.version:
                live.version = seen[1]
            else:
                self.forget(agent_id, stale=True)

    def dropped(self, versions: dict[str, int] | None) -> None:
        """An announcement from the change channel (None: announcements were missed, forget everything)."""
        if versions is None:
            self.clear()
            return
        for agent_id, version in versions.items():
            live = self._agents.get(agent_id)
            # Versions only grow: an announcement older than our copy (delivered late) is no news.
            if live is not None and not live.fence and (live.version is None or version > live.version):
                self.forget(agent_id, stale=True)
            stale = self._stale.get(agent_id)
            if stale is not None and (stale.announced is None or version > stale.announced):
                stale.announced = version

    def clear(self) -> None:
        """Forget every cached agent and block (turns in flight keep the objects they hold)."""
        self._agents.clear()
        self._stale.clear()
        self._blocks.clear()
        self._block_users.clear()

    # --- the compiled prompt ----------------------------------------------------------------
    def system_prompt(self, live: LiveAgent) -> str:
        """The compiled system message; rebuilt only when a block, the archival stats or the date change."""
        return live.system_prompt(self._today(live.agent.timezone))

    # --- agents -----------------------------------------------------------------------------
    async def create_agent(self, agent: Agent, new_blocks: list[Block]) -> LiveAgent:
        await self.store.create_agent(agent, new_blocks)
        for block in new_blocks:
            self._blocks[block.id] = block
        blocks = await self._shared_blocks(agent.block_ids)
        live = LiveAgent(agent=agent, blocks=blocks, messages=[], next_seq=1, recall_count=0, reshapes=0)
        self._remember(live)
        return live

    async def update_agent(self, agent: Agent) -> LiveAgent:
        agent.updated_at = utcnow()
        await self.store.update_agent(agent)
        await self.announce([agent.id])
        live = await self.get(agent.id)
        assert live is not None
        self._forget_blocks(live)
        live.agent = agent
        live.blocks = await self._shared_blocks(agent.block_ids)
        for block in live.blocks:
            self._block_users.setdefault(block.id, set()).add(live.id)
        live.invalidate_prompt()
        return live

    async def delete_agent(self, agent_id: str) -> bool:
        self.forget(agent_id)
        await self.settled(agent_id)
        deleted = await self.store.delete_agent(agent_id)
        if deleted and self.archival is not None:
            await self.archival.delete_agent(agent_id)
        if deleted:
            await self.announce([agent_id])
        return deleted

    # --- blocks -----------------------------------------------------------------------------
    async def get_block(self, block_id: str) -> Block | None:
        block = self._blocks.get(block_id)
        if block is not None:
            return replace(block)
        return await self.store.get_block(block_id)

    async def create_block(self, block: Block) -> None:
        await self.store.create_block(block)

    async def save_block(self, block: Block) -> Block:
        """Persist a changed block, then show it to every loaded agent that holds it."""
        block.updated_at = utcnow()
        await self.store.commit(Changes(blocks=[block]))
        self._apply_block(block)
        if self.shared:
            await self.announce(await self.store.agents_for_block(block.id))
        return block

    def _apply_block(self, block: Block) -> None:
        cached = self._blocks.get(block.id)
        if cached is None:
            return
        # Mutate in place: every LiveAgent holding this block shares the object.
        for name in ("label", "value", "limit", "description", "read_only", "metadata", "updated_at"):
            setattr(cached, name, getattr(block, name))
        for agent_id in self._block_users.get(block.id, ()):
            live = self._agents.get(agent_id)
            if live is not None:
                live.invalidate_prompt()

    async def delete_block(self, block_id: str) -> bool:
        users = list(self._block_users.get(block_id, ()))
        if self.shared:
            users = list({*users, *await self.store.agents_for_block(block_id)})
        deleted = await self.store.delete_block(block_id)
        if deleted:
            await self.announce(users)
        for agent_id in users:
            self.forget(agent_id)
        self._blocks.pop(block_id, None)
        return deleted

    async def attach_block(self, live: LiveAgent, block_id: str) -> LiveAgent:
        if block_id in live.agent.block_ids:
            return live
        agent = replace(live.agent, block_ids=[*live.agent.block_ids, block_id])
        return await self.update_agent(agent)

    async def detach_block(self, live: LiveAgent, block_id: str) -> LiveAgent:
        agent = replace(live.agent, block_ids=[b for b in live.agent.block_ids if b != block_id])
        return await self.update_agent(agent)

    # --- messages ---------------------------------------------------------------------------
    def new_message(self, live: LiveAgent, role: str, content: str | None = None, *, run_id: str | None = None,
                    tool_calls: list[dict[str, Any]] | None = None, tool_call_id: str | None = None,
                    name: str | None = None, metadata: dict[str, Any] | None = None) -> Message:
        """A message with the agent's next sequence number, added to the in-context list (not yet stored)."""
        message = Message(id=new_id("message"), agent_id=live.id, seq=live.next_seq, role=role, content=content,
                          tool_calls=tool_calls, tool_call_id=tool_call_id, name=name, run_id=run_id,
                          metadata=metadata or {})
        live.next_seq += 1
        live.messages.append(message)
        live.recall_count += 1
        return message

    async def reset_messages(self, live: LiveAgent) -> None:
        await self.settled(live.id)
        await self.store.reset_messages(live.id)
        for message in live.messages:
            message.in_context = False
        live.messages = []
        live.invalidate_prompt()
        await self.announce([live.id])

    async def put_summary(self, live: LiveAgent, content: str, metadata: dict[str, Any], gone: set[str]) -> Message:
        """Replace the messages `gone` by a summary put first in context, with the next seq; stored in one commit.

        If the commit fails, the agent is dropped from the cache: the next `get` reloads the store's truth.
        """
        summary = Message(id=new_id("message"), agent_id=live.id, seq=live.next_seq, role="system", content=content,
                          metadata=metadata)
        live.next_seq += 1
        live.recall_count += 1
        self.evict(live, gone)
        live.messages.insert(0, summary)
        try:
            await self.store.commit(Changes(messages=[summary], evict_message_ids=sorted(gone), insert_only=True,
                                            fence=(live.id, live.fence) if live.fence else None))
        except BaseException:
            self.forget(live.id)
            raise
        return summary

    def evict(self, live: LiveAgent, message_ids: set[str]) -> list[Message]:
        """Take messages out of the in-context list; the caller persists the eviction."""
        evicted = [m for m in live.messages if m.id in message_ids]
        live.messages = [m for m in live.messages if m.id not in message_ids]
        for message in evicted:
            message.in_context = False
        return evicted

    async def commit(self, changes: Changes) -> None:
        await self.store.commit(changes)

    async def commit_turn(self, agent_id: str, changes: Changes, after: Callable[[], None] | None = None) -> None:
        """Write a turn's history and return once it is committed; `settled` lets readers wait for it too.

        Turns that commit at the same moment share one transaction (the store groups concurrent commits),
        so waiting costs one commit, not a queue of them. The write outlives a cancelled caller.
        """
        assert changes.insert_only and not changes.blocks
        task = asyncio.ensure_future(self.store.append_turn(changes))
        self._unsettled.setdefault(agent_id, set()).add(task)
        task.add_done_callback(lambda done: self._settle(agent_id, done))
        await asyncio.shield(task)
        if after is not None:
            after()

    def _settle(self, agent_id: str, task: asyncio.Task[None]) -> None:
        pending = self._unsettled.get(agent_id)
        if pending is not None:
            pending.discard(task)
            if not pending:
                del self._unsettled[agent_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("writing the history of %s failed: %r", agent_id, task.exception())

    async def settled(self, agent_id: str | None = None) -> None:
        """Wait until the queued writes of one agent (or of all) are in the store: read-your-writes."""
        if agent_id is None:
            tasks = [t for pending in self._unsettled.values() for t in pending]
        else:
            tasks = list(self._unsettled.get(agent_id, ()))
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
