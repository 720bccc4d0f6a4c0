"""The semantics of the storage interface every backend implements, and the errors it raises.

The interface itself is `memory.protocols.Store` (re-exported here). DuckDB is the default backend.

All methods are coroutines: a backend must never block the event loop. Returned records are fresh
copies the caller may mutate. Lists are ordered as documented; `limit=None` means no limit.
Id scans (`agent_ids`, `recall_candidate_ids`) are keyset pages in byte order of the id (`COLLATE "C"`),
so callers hold one page at a time and can merge them with another backend's pages.

Errors a caller can act on are `StoreError`s: `NotFound` names the record a write needed, `Conflict`
means a uniqueness rule or a concurrent writer won. `(agent_id, seq)` is unique, so two writers can
never store the same seq: the later commit fails whole with Conflict.

`index_recall_in_commit`: a store that shares its database with the long-term memory may, once asked,
write the recall row of every message worth finding (`memory.recall.recall_record`) inside `commit`'s
transaction and drop an agent's recall rows and passages with the agent. False (the default) means it
cannot, and the long-term memory indexes messages after their commit instead.
"""

from __future__ import annotations

from memory.protocols import ID_PAGE_SIZE, Store

__all__ = ["ID_PAGE_SIZE", "PORTABLE_KINDS", "Conflict", "FenceLost", "NotFound", "SchemaTooNewError", "Store",
           "StoreError"]

# The tables `scan` and `existing_ids` serve (export and import walk every record of each).
PORTABLE_KINDS = ("tools", "blocks", "agents", "runs", "messages")


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


class StoreUnavailable(StoreError):
    """The database did not answer: down, unreachable, restarting, full, or the connection was lost mid-call.

    Nothing the call was writing is committed unless the database committed it before it went away (a turn's
    client is then told it failed, never that it was saved); the call can be sent again once it answers.
    """


class SchemaTooNewError(StoreError):
    """The database was migrated by a newer memproxy than this one."""
