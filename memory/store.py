"""The storage interface every backend implements, and the errors it raises. DuckDB is the default.

All methods are coroutines: a backend must never block the event loop. Returned records are fresh
copies the caller may mutate. Lists are ordered as documented; `limit=None` means no limit.
Id scans (`agent_ids`, `recall_candidate_ids`) are keyset pages in byte order of the id (`COLLATE "C"`),
so callers hold one page at a time and can merge them with another backend's pages.

Errors a caller can act on are `StoreError`s: `NotFound` names the record a write needed, `Conflict`
means a uniqueness rule or a concurrent writer won. `(agent_id, seq)` is unique, so two writers can
never store the same seq: the later commit fails whole with Conflict.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from memory.secretbox import SecretBox
from memory.models import Agent, Block, Changes, Message, Run, Tool
from memory.mcp_servers import McpServer

# The tables `scan` and `existing_ids` serve (export and import walk every record of each).
PORTABLE_KINDS = ("tools", "blocks", "agents", "runs", "messages")

# Each page of a keyset scan costs about a scan of the table in DuckDB and LanceDB: few, large pages.
ID_PAGE_SIZE = 50_000


class StoreError(Exception):
    """Base of every error a `Store` raises on purpose; anything else is a bug or an outage."""


class NotFound(StoreError):
    """A record a write refers to does not exist; `kind` and `ident` name the first one missing."""

    def __init__(self, kind: str, ident: str, message: str | None = None) -> None:
        super().__init__(message or f"{kind} {ident!r} does not exist")
        self.kind = kind
        self.ident = ident


class Conflict(StoreError):
    """A write would break a uniqueness rule (an id, or an agent's message `seq`) or lost a race to another writer."""


class FenceLost(Conflict):
    """A write made under a turn lock that another process has since taken (the holder paused past its TTL)."""


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer memproxy than this one."""


class Store(ABC):
    """Persistent agents, blocks, messages, runs and custom tools."""

    # Encrypts agents' tool variables at rest; the server sets it before `open` (None: plain JSON).
    secret_box: SecretBox | None = None

    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and release the database."""

    # --- agents -----------------------------------------------------------------------------
    @abstractmethod
    async def create_agent(self, agent: Agent, new_blocks: list[Block]) -> None:
        """Insert the agent and `new_blocks`, attach `agent.block_ids`, atomically; NotFound for a missing block."""

    @abstractmethod
    async def get_agent(self, agent_id: str) -> Agent | None:
        """One agent with `block_ids` filled in attachment order, or None."""

    @abstractmethod
    async def list_agents(
        self,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        match_all_tags: bool = False,
        before: str | None = None,
        after: str | None = None,
        limit: int | None = 50,
        ascending: bool = True,
    ) -> list[Agent]:
        """Agents ordered by creation time; `before`/`after` are agent-id cursors."""

    @abstractmethod
    async def update_agent(self, agent: Agent) -> None:
        """Overwrite the agent row and its attachments (order kept); NotFound if the agent or a block is gone."""

    @abstractmethod
    async def delete_agent(self, agent_id: str) -> bool:
        """Delete the agent, its attachments, messages and runs; blocks no other agent uses are deleted."""

    @abstractmethod
    async def count_agents(self) -> int:
        """How many agents exist."""

    # --- blocks -----------------------------------------------------------------------------
    @abstractmethod
    async def create_block(self, block: Block) -> None:
        """Insert a standalone block; Conflict if the id is taken."""

    @abstractmethod
    async def get_block(self, block_id: str) -> Block | None:
        """One block, or None."""

    @abstractmethod
    async def get_blocks(self, block_ids: list[str]) -> list[Block]:
        """The blocks with these ids, in the order given (missing ids skipped)."""

    @abstractmethod
    async def list_blocks(
        self, *, label: str | None = None, before: str | None = None, after: str | None = None, limit: int | None = 50
    ) -> list[Block]:
        """Blocks ordered by creation time; cursors are block ids."""

    @abstractmethod
    async def delete_block(self, block_id: str) -> bool:
        """Delete the block and detach it from every agent."""

    @abstractmethod
    async def agents_for_block(self, block_id: str) -> list[str]:
        """Ids of the agents the block is attached to."""

    # --- messages ---------------------------------------------------------------------------
    @abstractmethod
    async def list_messages(
        self,
        agent_id: str,
        *,
        before: str | None = None,
        after: str | None = None,
        limit: int | None = 100,
        ascending: bool = True,
        in_context_only: bool = False,
    ) -> list[Message]:
        """An agent's messages by `seq`; `before`/`after` are message-id cursors (exclusive)."""

    @abstractmethod
    async def get_messages(self, message_ids: list[str]) -> list[Message]:
        """The messages with these ids, in `seq` order."""

    @abstractmethod
    async def count_messages(self, agent_id: str) -> int:
        """Every message the agent ever had (recall memory size)."""

    @abstractmethod
    async def agent_ids(self, *, after: str | None = None, limit: int = ID_PAGE_SIZE) -> list[str]:
        """One page of agent ids, ascending, greater than `after` (for reconciling the search index)."""

    @abstractmethod
    async def recall_candidate_ids(
        self, skip_tool_names: list[str], *, after: str | None = None, limit: int = ID_PAGE_SIZE
    ) -> list[str]:
        """One page of ids of messages recall should hold: user/assistant text, tool results but these tools'."""

    @abstractmethod
    async def max_message_seq(self, agent_id: str) -> int:
        """The largest `seq` stored for the agent, or 0."""

    @abstractmethod
    async def reset_messages(self, agent_id: str) -> None:
        """Take every message of the agent out of context (they stay in recall)."""

    # --- runs -------------------------------------------------------------------------------
    @abstractmethod
    async def get_run(self, run_id: str) -> Run | None:
        """One run, or None."""

    @abstractmethod
    async def list_runs(
        self, *, agent_id: str | None = None, before: str | None = None, after: str | None = None, limit: int | None = 50
    ) -> list[Run]:
        """Runs, newest first; cursors are run ids."""

    # --- custom tools -----------------------------------------------------------------------
    @abstractmethod
    async def create_tool(self, tool: Tool) -> None:
        """Insert a custom tool; Conflict if its id or name is taken."""

    @abstractmethod
    async def get_tool(self, tool_id: str) -> Tool | None:
        """One custom tool, or None."""

    @abstractmethod
    async def list_tools(self) -> list[Tool]:
        """Every custom tool, ordered by creation time (there are few; the registry loads them all at start)."""

    @abstractmethod
    async def update_tool(self, tool: Tool) -> None:
        """Overwrite the tool row; NotFound if it is gone, Conflict if its new name is taken."""

    @abstractmethod
    async def delete_tool(self, tool_id: str) -> bool:
        """Delete the tool row (detaching it from agents is the caller's job); False if there was none."""

    # --- MCP servers (memory/mcp_servers.py) ---------------------------------------------------
    @abstractmethod
    async def create_mcp_server(self, server: McpServer) -> None:
        """Insert an MCP server; Conflict if its id or server_name is taken."""

    @abstractmethod
    async def list_mcp_servers(self) -> list[McpServer]:
        """Every MCP server, oldest first (there are few; the server loads them all at start)."""

    @abstractmethod
    async def update_mcp_server(self, server: McpServer) -> None:
        """Overwrite the row; NotFound if it is gone."""

    @abstractmethod
    async def delete_mcp_server(self, server_id: str) -> bool:
        """Delete the row; False if there was none."""

    # --- writes -----------------------------------------------------------------------------
    @abstractmethod
    async def commit(self, changes: Changes) -> None:
        """Apply every upsert, insert and eviction in `changes` in one transaction; Conflict on a taken seq or id."""

    def index_recall_in_commit(self, skip_tool_names: frozenset[str]) -> bool:
        """From now on, write the recall row of every message worth finding (see `memory.recall.recall_record`)
        inside `commit`'s transaction, and drop an agent's recall rows and passages with the agent.

        Only a store sharing its database with the long-term memory can; False (the default) means it
        cannot, and the long-term memory indexes messages after their commit instead.
        """
        return False

    # --- export / import (memory.portable) ----------------------------------------------------
    @abstractmethod
    async def scan(
        self, kind: str, *, after: str | None = None, limit: int = 1000
    ) -> list[Agent] | list[Block] | list[Message] | list[Run] | list[Tool]:
        """One keyset page of every record of a `PORTABLE_KINDS` table, ascending by id, ids greater than `after`."""

    @abstractmethod
    async def existing_ids(self, kind: str, ids: list[str]) -> set[str]:
        """Which of `ids` a `PORTABLE_KINDS` table holds."""
