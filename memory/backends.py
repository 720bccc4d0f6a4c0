"""Choosing the storage backend from configuration: the one place that names an implementation.

A backend provides both halves of persistent state: a `Store` (agents, blocks, messages, runs) and
a `LongTermMemory` (passages, recall index, search). Callers get them from `select_backend` and only
ever name the two interfaces.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass

from memory.longterm.api import LongTermMemory
from memory.longterm.embedder import Embedder
from memory.store import Store

LANCE_DIR = "lance"


@dataclass(frozen=True)
class BackendConfig:
    """The settings that choose and locate the backend, as plain values (memory/ never sees proxy's Settings)."""

    data_dir: str
    duckdb_memory_limit: str | None = None  # DuckDB's buffer pool; None: DuckDB's default (80% of RAM)
    search_cache_bytes: int | None = None  # LanceDB's index and metadata caches
    search_optimize_interval: float = 10.0  # seconds between compactions of the search tables


class Backend(ABC):
    """A configured backend: makes its store and its long-term memory, both not yet opened."""

    name: str

    @abstractmethod
    def store(self) -> Store:
        """The store of agents, blocks, messages and runs."""

    @abstractmethod
    def longterm(self, embedder: Embedder | None) -> LongTermMemory:
        """Long-term memory, embedding with `embedder` (None: full-text search only)."""


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
                                   optimize_interval=self.config.search_optimize_interval)


def select_backend(config: BackendConfig) -> Backend:
    """The backend `config` selects; today always the embedded one."""
    return EmbeddedBackend(config)
