"""One agent's live state: its record, blocks and in-context messages as the hot path reads them.

`memory.agents.AgentMemory` is its only writer (a turn's lock fence aside), so the cached prompt and the
in-context totals change exactly when what they depend on does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from memory.compile import MemoryMetadata, compile_system_prompt
from memory.incontext import InContext
from memory.models import Agent, Block, Message


@dataclass
class LiveAgent:
    agent: Agent
    blocks: list[Block]  # attached blocks in order; shared Block objects from the block cache
    messages: list[Message]  # in-context messages by seq (a summary is a system message first)
    next_seq: int
    recall_count: int
    archival_count: int = 0
    archival_tags: tuple[str, ...] = ()
    prompt: str | None = None
    prompt_meta: MemoryMetadata | None = None
    in_context: InContext = field(default_factory=InContext)  # wire bytes and tokens of `messages`
    extra: dict[str, Any] = field(default_factory=dict)
    # Several processes: the agent's version in Redis this state matches (None = not known: check at the next
    # lease), and the fencing token of the turn lock held on it right now (0 = none).
    version: int | None = None
    fence: int = 0
    # A stale copy's: the newest version announced since it was dropped. A load that starts after hearing it reads
    # at least that version's writes (a version is announced after its commit), so it is the new copy's version.
    announced: int | None = None
    # The store's reshape count of the agent this state was read at (`Store.history_since`; None = not known).
    reshapes: int | None = None
    # The `<memory_metadata>` another process compiled the agent's prompt with: a reload here compiles the same
    # bytes (the upstream's prompt cache survives the agent moving between processes) until a block changes.
    pinned_meta: MemoryMetadata | None = None

    @property
    def id(self) -> str:
        return self.agent.id

    def block(self, label: str) -> Block | None:
        for block in self.blocks:
            if block.label == label:
                return block
        return None

    def invalidate_prompt(self) -> None:
        self.prompt = None
        self.pinned_meta = None

    def system_prompt(self, today: date) -> str:
        """The compiled system message as of `today`; compiled again only after `invalidate_prompt` or a new day."""
        if self.prompt is not None and self.prompt_meta is not None and self.prompt_meta.today == today:
            return self.prompt
        pinned, self.pinned_meta = self.pinned_meta, None
        meta = pinned if pinned is not None and pinned.today == today else MemoryMetadata(
            today=today, recall_count=self.recall_count, archival_count=self.archival_count,
            archival_tags=self.archival_tags)
        self.prompt = compile_system_prompt(self.agent.system, self.blocks, meta)
        self.prompt_meta = meta
        return self.prompt
