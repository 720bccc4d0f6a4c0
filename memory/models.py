"""The persistent records: agents, blocks, messages, runs, custom tools. Plain dataclasses, no I/O."""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

DEFAULT_BLOCK_LIMIT = 20000

# Labels become XML element names in the compiled prompt, so they must not carry markup.
LABEL_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")

DEFAULT_DESCRIPTIONS = {
    "persona": (
        "The persona block: what you are and how you behave. Keep it current so your voice and "
        "character stay consistent across every conversation."
    ),
    "human": (
        "The human block: what you know about the person you are talking with. Update it as you "
        "learn so the conversation stays personal."
    ),
}


_ids = random.Random(random.SystemRandom().getrandbits(64))
# A forked child must not replay its parent's sequence.
os.register_at_fork(after_in_child=lambda: _ids.seed(random.SystemRandom().getrandbits(64)))


def new_id(kind: str) -> str:
    """Return `<kind>-<uuid>`, the id format of every record (Letta's `agent-<uuid4>`).

    The UUID has a version 4 layout (anything that checks the format accepts it), but its first 48 bits are the
    time in milliseconds, as in a version 7 UUID, and the other 74 are random: ids made later sort later, so a
    new row's key lands at the end of an id index instead of anywhere in it. With a million messages stored,
    DuckDB's inserts and checkpoints then cost a turn ~35 us of CPU instead of ~64 (`python -m bench.store_cost`;
    PostgreSQL's B-trees gain the same way). Ids name records, they are not secrets: a PRNG seeded once from the OS avoids a system call per id
    (uuid4 reads os.urandom every time, measurable on the hot path).
    """
    return id_from_bits(kind, (time.time_ns() // 1_000_000) << 80 | _ids.getrandbits(80))


def id_from_bits(kind: str, bits: int) -> str:
    """`<kind>-<uuid>` of 128 bits, the version nibble and variant set as a version 4 UUID has them."""
    h = f"{(bits & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC << 60) | (0x8 << 60):032x}"
    return f"{kind}-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Block:
    id: str
    label: str
    value: str = ""
    limit: int = DEFAULT_BLOCK_LIMIT
    description: str | None = None
    read_only: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass
class Agent:
    id: str
    name: str
    system: str = ""
    description: str | None = None
    model: str = "gpt-4o-mini"
    embedding: str | None = None
    context_window_limit: int | None = None
    tools: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    message_buffer_autoclear: bool = False
    timezone: str = "UTC"  # IANA zone: the dates the agent sees (memory metadata, search filters) are local to it
    # Per-agent sampling defaults (temperature, top_p, max_tokens, ...); requests override them.
    llm_params: dict[str, Any] = field(default_factory=dict)
    # Ordered ids of the attached blocks; the blocks themselves live in the blocks table.
    block_ids: list[str] = field(default_factory=list)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    # Environment variables (API keys) for this agent's custom tools; never shown in full by the API.
    tool_env: dict[str, str] = field(default_factory=dict)
    # Letta's tool rules, as validated JSON objects (tools/rules.py reads them); approvals are rules too.
    tool_rules: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Tool:
    """A custom tool: one Python function run in the sandbox, offered to the model by its JSON schema."""

    id: str
    name: str
    source_code: str
    json_schema: dict[str, Any]  # the OpenAI function object: {name, description, parameters}
    description: str = ""
    tags: list[str] = field(default_factory=list)
    return_char_limit: int = 50000
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    default_requires_approval: bool = False  # agents it is attached to get a requires_approval rule for it


# Slots: a loaded history holds thousands; ~25% faster to make from a row, ~40 bytes less each (weakref kept).
@dataclass(slots=True, weakref_slot=True)
class Message:
    id: str
    agent_id: str
    seq: int  # strictly increasing per agent; the order of the conversation
    role: str  # "user" | "assistant" | "tool" | "system" (system = summary or notice)
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # OpenAI shape: {id, type, function: {name, arguments}}
    tool_call_id: str | None = None
    name: str | None = None
    run_id: str | None = None
    in_context: bool = True
    # Free-form flags: {"interrupted": true}, {"pending": true}, {"kind": "summary"}, ...
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)


@dataclass
class HistoryTail:
    """An agent's stored history past a seq (`Store.history_since`): enough to bring a cached copy up to date."""

    new: list[Message]  # in-context messages with a higher seq, by seq
    reshapes: int  # how many times the agent's stored history changed other than by a turn's append (0: none)
    top: int  # the highest seq among the agent's messages after it, in context or not (0: none)
    added: int  # how many of the agent's messages come after it, in context or not (from 0: all, recall's size)


@dataclass
class Run:
    id: str
    agent_id: str
    status: str = "running"  # running | completed | failed | cancelled
    stop_reason: str | None = None  # end_turn | max_steps | tool_calls | error | cancelled
    steps: int = 0
    usage: dict[str, Any] = field(default_factory=dict)  # prompt/completion/total tokens and detail objects
    timings: dict[str, float] = field(default_factory=dict)  # ttft_ms, upstream_ms, tool_ms, total_ms
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    completed_at: datetime | None = None


@dataclass
class Changes:
    """One atomic write: everything in it lands together or not at all."""

    blocks: list[Block] = field(default_factory=list)  # upserts
    messages: list[Message] = field(default_factory=list)  # inserts or full-row upserts by id
    runs: list[Run] = field(default_factory=list)  # upserts
    evict_message_ids: list[str] = field(default_factory=list)  # set in_context = false
    # The messages and runs are new rows: a plain insert (a duplicate id fails the commit), no upsert cost.
    insert_only: bool = False
    # (agent id, fencing token) of the turn lock this write was made under: a store shared by several
    # processes refuses it (FenceLost) once a newer lock of the agent has committed.
    fence: tuple[str, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.blocks or self.messages or self.runs or self.evict_message_ids)
