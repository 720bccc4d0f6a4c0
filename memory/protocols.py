"""The memory layer's extension points, one line each: what a backend or a collaborator must provide.

`Store` and `LongTermMemory` are the two halves of a storage backend (memory/backends.py picks one);
their semantics are in memory/store.py and memory/longterm/api.py. The backends name these protocols
as their base to inherit the few defaults; mypy checks every method against the declaration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from datetime import datetime

    from memory.longterm.records import Passage, PassageWithVector, RecallRecord, SearchHit
    from memory.longterm.timefilter import TimeBound
    from memory.mcp_servers import McpServer
    from memory.models import Agent, Block, Changes, HistoryTail, Message, Run, Tool
    from memory.secretbox import SecretBox

T = TypeVar("T")

# Each page of a keyset scan costs about a scan of the table in DuckDB and LanceDB: few, large pages.
ID_PAGE_SIZE = 50_000


@runtime_checkable  # isinstance checks every member is there (tests do; the server relies on mypy)
class Store(Protocol):
    """Persistent agents, blocks, messages, runs, custom tools and MCP servers."""

    # Encrypts agents' tool variables at rest; the server sets it before `open` (None: plain JSON).
    secret_box: SecretBox | None = None
    # Told, on the event loop, the agent id of an acknowledged `append_turn` the tables later refused.
    on_rejected: Callable[[str], None] | None = None

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None:
        """Flush and release the database."""

    async def create_agent(self, agent: Agent, new_blocks: list[Block]) -> None:
        """Insert the agent and `new_blocks`, attach `agent.block_ids`, atomically; NotFound for a missing block."""

    async def get_agent(self, agent_id: str) -> Agent | None:
        """One agent with `block_ids` filled in attachment order, or None."""

    async def list_agents(self, *, name: str | None = None, tags: list[str] | None = None,
                          match_all_tags: bool = False, before: str | None = None, after: str | None = None,
                          limit: int | None = 50, ascending: bool = True) -> list[Agent]:
        """Agents ordered by creation time; `before`/`after` are agent-id cursors."""

    async def update_agent(self, agent: Agent) -> None:
        """Overwrite the agent row and its attachments (order kept); NotFound if the agent or a block is gone."""

    async def delete_agent(self, agent_id: str) -> bool:
        """Delete the agent, its attachments, messages and runs; blocks no other agent uses are deleted."""

    async def count_agents(self) -> int:
        """How many agents exist."""

    async def create_block(self, block: Block) -> None:
        """Insert a standalone block; Conflict if the id is taken."""

    async def get_block(self, block_id: str) -> Block | None:
        """One block, or None."""

    async def get_blocks(self, block_ids: list[str]) -> list[Block]:
        """The blocks with these ids, in the order given (missing ids skipped)."""

    async def attached_blocks(self, agent_id: str) -> list[Block]:
        """The blocks attached to the agent, in no set order (a load reads them beside the agent's record)."""

    async def list_blocks(self, *, label: str | None = None, before: str | None = None, after: str | None = None,
                          limit: int | None = 50) -> list[Block]:
        """Blocks ordered by creation time; cursors are block ids."""

    async def delete_block(self, block_id: str) -> bool:
        """Delete the block and detach it from every agent."""

    async def agents_for_block(self, block_id: str) -> list[str]:
        """Ids of the agents the block is attached to."""

    async def list_messages(self, agent_id: str, *, before: str | None = None, after: str | None = None,
                            limit: int | None = 100, ascending: bool = True,
                            in_context_only: bool = False) -> list[Message]:
        """An agent's messages by `seq`; `before`/`after` are message-id cursors (exclusive)."""

    async def get_messages(self, message_ids: list[str]) -> list[Message]:
        """The messages with these ids, in `seq` order."""

    async def count_messages(self, agent_id: str) -> int:
        """Every message the agent ever had (recall memory size)."""

    async def agent_ids(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        """One page of agent ids, ascending, greater than `after` (for reconciling the search index)."""

    async def recall_candidate_ids(self, skip_tool_names: list[str], *, after: str | None = None,
                                   limit: int = ID_PAGE_SIZE) -> list[str]:
        """One page of ids of messages recall should hold: user/assistant text, tool results but these tools'."""

    async def history_since(self, agent_id: str, seq: int) -> HistoryTail:
        """The in-context messages after `seq`, the agent's reshape count, and the top seq and count of all after it.

        Every write of the agent's messages is a reshape but the new rows of `append_turn` (its evictions are one):
        while the count is unchanged, the history up to any seq is as it was, and a copy of it needs only what
        followed.
        """

    async def reset_messages(self, agent_id: str) -> None:
        """Take every message of the agent out of context (they stay in recall): a reshape."""

    async def get_run(self, run_id: str) -> Run | None:
        """One run, or None."""

    async def list_runs(self, *, agent_id: str | None = None, before: str | None = None, after: str | None = None,
                        limit: int | None = 50) -> list[Run]:
        """Runs, newest first; cursors are run ids."""

    async def create_tool(self, tool: Tool) -> None:
        """Insert a custom tool; Conflict if its id or name is taken."""

    async def get_tool(self, tool_id: str) -> Tool | None:
        """One custom tool, or None."""

    async def list_tools(self) -> list[Tool]:
        """Every custom tool, ordered by creation time (there are few; the registry loads them all at start)."""

    async def update_tool(self, tool: Tool) -> None:
        """Overwrite the tool row; NotFound if it is gone, Conflict if its new name is taken."""

    async def delete_tool(self, tool_id: str) -> bool:
        """Delete the tool row (detaching it from agents is the caller's job); False if there was none."""

    async def create_mcp_server(self, server: McpServer) -> None:
        """Insert an MCP server; Conflict if its id or server_name is taken."""

    async def list_mcp_servers(self) -> list[McpServer]:
        """Every MCP server, oldest first (there are few; the server loads them all at start)."""

    async def update_mcp_server(self, server: McpServer) -> None:
        """Overwrite the row; NotFound if it is gone."""

    async def delete_mcp_server(self, server_id: str) -> bool:
        """Delete the row; False if there was none."""

    async def commit(self, changes: Changes) -> None:
        """Apply every upsert, insert and eviction in `changes` in one transaction; Conflict on a taken seq or id.

        The agents whose messages it writes or evicts are reshaped (`history_since`)."""

    async def append_turn(self, changes: Changes) -> None:
        """Write a turn's new rows (insert-only, seqs above the agent's top); durable on return, maybe in a journal
        ahead of the tables. Only its evictions reshape the agent."""
        await self.commit(changes)

    def index_recall_in_commit(self, skip_tool_names: frozenset[str]) -> bool:
        """Write recall rows inside `commit` from now on, if this store shares a database with long-term memory."""
        return False

    async def scan(self, kind: str, *, after: str | None = None,
                   limit: int = 1000) -> list[Agent] | list[Block] | list[Message] | list[Run] | list[Tool]:
        """One keyset page of every record of a `PORTABLE_KINDS` table, ascending by id, ids greater than `after`."""

    async def existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        """Which of `ids` a `PORTABLE_KINDS` table holds."""


@runtime_checkable
class LongTermMemory(Protocol):
    """Archival passages and the searchable copy of every agent's messages."""

    # True when the store writes the recall rows in the messages' own transaction (`Store.index_recall_in_commit`).
    indexes_in_store_commit: bool = False

    @property
    def vector_search(self) -> bool:
        """Whether searches can rank by vector: an embedder, and a database that can hold vectors."""
        return getattr(self, "embedder", None) is not None

    async def open(self) -> None:
        """Connect and create or upgrade what the backend needs."""

    def start_background(self) -> None:
        """Start background work (write-behind, index maintenance) on the running loop; may do nothing."""

    async def flush(self) -> None:
        """Return once every message enqueued before the call is searchable."""

    async def close(self) -> None:
        """Write what is queued, stop background work, release the database."""

    async def add_passages(self, agent_id: str, items: list[tuple[str, list[str]]], created_at: datetime | None = None,
                           metadata: dict[str, Any] | None = None) -> list[Passage]:
        """Store (text, tags) passages durably, searchable on return; returns them with their new ids."""

    async def get_passage(self, agent_id: str, passage_id: str) -> Passage | None:
        """One of the agent's passages, or None."""

    async def list_passages(self, agent_id: str, after: str | None = None, before: str | None = None,
                            limit: int | None = 100, search: str | None = None,
                            ascending: bool = True) -> list[Passage]:
        """Passages by (created_at, id); cursors are passage ids in the listing's order, unknown ones give []."""

    async def delete_passage(self, agent_id: str, passage_id: str) -> bool:
        """Delete one of the agent's passages; False if it has no such passage."""

    async def count_passages(self, agent_id: str) -> int:
        """How many passages the agent has."""

    async def passage_tags(self, agent_id: str) -> list[str]:
        """Sorted unique tags of the agent's passages."""

    async def passage_figures(self, agent_id: str) -> tuple[int, list[str]]:
        """`count_passages` and `passage_tags` in one read."""

    async def search_passages(self, agent_id: str, query: str, *, tags: list[str] | None = None,
                              tag_match_mode: str = "any", top_k: int = 10, start: TimeBound = None,
                              end: TimeBound = None, mode: str = "hybrid", tz: str = "UTC") -> list[SearchHit]:
        """Hybrid (or vector / fts) search of the agent's passages; dates inclusive, read in `tz`."""

    def enqueue_messages(self, records: list[RecallRecord], *, new: bool = False) -> None:
        """Index messages without waiting; an id indexed again replaces its row (`new` promises it never was)."""

    async def search_recall(self, agent_id: str, query: str, *, roles: list[str] | None = None, limit: int = 10,
                            start: TimeBound = None, end: TimeBound = None, mode: str = "hybrid",
                            tz: str = "UTC") -> list[SearchHit]:
        """Hybrid (or vector / fts) search of the agent's messages; dates inclusive, read in `tz`."""

    async def recall_ids(self, agent_id: str) -> set[str]:
        """Ids of the agent's indexed messages, queued ones included."""

    async def recall_ids_all(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        """One page of every agent's indexed message ids, ascending, greater than `after`."""

    async def delete_recall(self, ids: list[str] | set[str]) -> None:
        """Remove messages from the recall index, queued ones included."""

    async def delete_agent(self, agent_id: str) -> None:
        """Drop every passage and recall row of the agent."""

    async def agent_ids(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        """One page of the ids of agents with any passage or recall row, ascending, greater than `after`."""

    async def export_passages(self, *, after: str | None = None, limit: int = 1000) -> list[PassageWithVector]:
        """One keyset page of every agent's passages with their vectors, ascending by id, ids greater than `after`."""

    async def existing_passage_ids(self, ids: list[str]) -> set[str]:
        """Which of `ids` are stored passages (of any agent)."""

    async def put_passages(self, items: list[PassageWithVector]) -> None:
        """Insert passages as given (ids, dates, vectors kept; a vector that does not fit is re-embedded later)."""


class ArchivalStats(Protocol):
    """What the compiled prompt needs of an agent's archival memory (a `LongTermMemory` provides it)."""

    async def passage_figures(self, agent_id: str) -> tuple[int, list[str]]:
        """How many passages the agent has and their sorted unique tags, in one read."""

    async def delete_agent(self, agent_id: str) -> None:
        """Drop the agent's passages along with the agent."""


class Coherence(Protocol):
    """Tells the other processes sharing the store that agents changed (proxy.protocols.AgentLocks provides it)."""

    shared: bool  # several processes share the store

    async def changed(self, agent_ids: list[str]) -> list[tuple[str, int | None, int]]:
        """Bump the agents' versions; (agent, version before, version after) for each one bumped."""

    async def version(self, agent_id: str) -> int | None:
        """The agent's version now, read before a load reads the store (None: unknown)."""


class Summarizer(Protocol):
    """Writes the running summary of evicted messages (the server's is a chat call to the upstream)."""

    async def __call__(self, request: dict[str, Any], /) -> str:
        """The summary text the model returns for an OpenAI chat completions request body."""


class Claim(Protocol):
    """A process's hold on a shared database, kept while it serves (memory.backends.Backend.claim)."""

    async def close(self) -> None:
        """Give the claim up."""


class Spawn(Protocol):
    """Runs a coroutine off the request path, keeping it referenced until it ends (proxy.runtime.Runtime.spawn)."""

    def __call__(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """The task running `coro`."""
