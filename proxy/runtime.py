"""Everything a request needs, created once at start-up and shared by the routes."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from memory.agents import AgentMemory
from memory.datadir import open_private_dir, release_private_dir
from memory.duckdb_store import DuckDBStore
from memory.store import Store
from proxy.config import Settings
from proxy.upstream import Upstream

log = logging.getLogger("memproxy")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    memory: AgentMemory
    upstream: Upstream
    longterm: Any = None  # memory.longterm.LongTermMemory once opened
    turns: Any = None  # proxy.chat.serving.TurnRunner
    registry: Any = None  # tools.registry.ToolRegistry
    budget: Any = None  # memory.compaction.ContextBudget
    heap_trimmer: asyncio.Task[None] | None = None  # memory.native_heap.trim_every
    reconciliation: dict[str, Any] = field(default_factory=dict)  # what start-up repaired in the search index
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Any, name: str | None = None) -> asyncio.Task[Any]:
        """Run work off the request path, keeping a reference so it is not collected mid-flight."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed: %r", task.get_name(), task.exception())

    async def drain(self) -> None:
        while self.background:
            await asyncio.gather(*list(self.background), return_exceptions=True)


async def open_runtime(settings: Settings) -> Runtime:
    open_private_dir(settings.data_dir)
    store = DuckDBStore(os.path.join(settings.data_dir, "memproxy.duckdb"), memory_limit=settings.duckdb_memory_limit)
    try:
        await store.open()
    except BaseException:
        release_private_dir()
        raise
    upstream = Upstream(settings.upstream_url or "", settings.upstream_api_key, timeout=settings.upstream_timeout)
    memory = AgentMemory(store, capacity=settings.agent_cache_size)
    return Runtime(settings=settings, store=store, memory=memory, upstream=upstream)


async def close_runtime(rt: Runtime) -> None:
    try:
        await rt.drain()
        await rt.upstream.close()
        if rt.longterm is not None:
            await rt.longterm.close()
        await rt.store.close()
    finally:
        release_private_dir()
