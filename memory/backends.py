"""Choosing the storage backend from configuration: the one place that names an implementation.

A backend provides both halves of persistent state: a `Store` (agents, blocks, messages, runs) and
a `LongTermMemory` (passages, recall index, search). Callers get them from `select_backend` and only
ever name the two interfaces.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from memory.longterm.api import LongTermMemory
from memory.longterm.embedder import Embedder
from memory.protocols import Claim
from memory.store import Store

LANCE_DIR = "lance"


@dataclass(frozen=True)
class BackendConfig:
    """The settings that choose and locate the backend, as plain values (memory/ never sees proxy's Settings)."""

    data_dir: str
    database_url: str | None = None  # postgresql://...: the PostgreSQL backend; None: the embedded one
    duckdb_memory_limit: str | None = None  # DuckDB's buffer pool; None: DuckDB's default (80% of RAM)
    search_cache_bytes: int | None = None  # LanceDB's index and metadata caches
    search_optimize_interval: float = 10.0  # seconds between compactions of the search tables
    search_reopen_interval: float = 10.0  # least seconds between fresh LanceDB sessions (after a compaction)


class Backend(ABC):
    """A configured backend: makes its store and its long-term memory, both not yet opened."""

    name: str

    @abstractmethod
    def store(self) -> Store:
        """The store of agents, blocks, messages and runs."""

    @abstractmethod
    def longterm(self, embedder: Embedder | None) -> LongTermMemory:
        """Long-term memory, embedding with `embedder` (None: full-text search only)."""

    async def claim(self, *, shared: bool) -> Claim | None:
        """Claim the store for this process (`shared`: beside others that coordinate through Redis).

        Returns a handle with an async `close()`, or None when the backend has nothing to claim (the embedded
        one guards its data dir at start instead). StoreError when another process's claim excludes this one.
        """
        return None


class EmbeddedBackend(Backend):
    """The single-process default: a DuckDB file and a LanceDB folder in the data dir."""

    name = "embedded"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    def store(self) -> Store:
        from memory.duckdb_store import open_store

        return open_store(self.config.data_dir, memory_limit=self.config.duckdb_memory_limit)

    def longterm(self, embedder: Embedder | None) -> LongTermMemory:
        # Imported here so a process on another backend never loads LanceDB.
        from memory.longterm.index import LanceLongTermMemory

        return LanceLongTermMemory(os.path.join(self.config.data_dir, LANCE_DIR), embedder,
                                   cache_bytes=self.config.search_cache_bytes,
                                   optimize_interval=self.config.search_optimize_interval,
                                   reopen_interval=self.config.search_reopen_interval)


class PostgresBackend(Backend):
    """PostgreSQL for everything: any number of memproxy processes may share the database."""

    name = "postgresql"

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def store(self) -> Store:
        from memory.postgres_store import PostgresStore

        return PostgresStore(self.database_url)

    def longterm(self, embedder: Embedder | None) -> LongTermMemory:
        from memory.postgres_longterm import PostgresLongTermMemory

        return PostgresLongTermMemory(self.database_url, embedder)

    async def claim(self, *, shared: bool) -> Claim | None:
        from memory.postgres_claim import claim_database

        return await claim_database(self.database_url, shared=shared)

    def __repr__(self) -> str:
        return f"PostgresBackend({redact_url(self.database_url)!r})"


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def select_backend(config: BackendConfig) -> Backend:
    """PostgreSQL when a database URL is set, else the embedded default in the data dir."""
    if config.database_url:
        if not config.database_url.startswith(POSTGRES_SCHEMES):
            raise ValueError(f"database URL must start with postgresql://, not {redact_url(config.database_url)!r}")
        return PostgresBackend(config.database_url)
    return EmbeddedBackend(config)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, fit for logs and banners."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def describe_backend(config: BackendConfig) -> str:
    """One line naming the backend and where its data lives, without secrets (for the banner)."""
    if config.database_url:
        return f"postgresql {redact_url(config.database_url)}"
    return f"embedded (DuckDB + LanceDB in {os.path.abspath(config.data_dir)})"
