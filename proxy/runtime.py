"""Everything a request needs, created once at start-up and shared by the routes."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from memory.agents import AgentMemory
from memory.backends import Backend, BackendConfig, describe_backend, select_backend
from memory.longterm.api import LongTermMemory
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
    backend: Backend
    longterm: LongTermMemory | None = None  # opened by start_services, once the upstream URL is final
    turns: Any = None  # proxy.chat.serving.TurnRunner
    registry: Any = None  # tools.registry.ToolRegistry
    budget: Any = None  # memory.compaction.ContextBudget
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


def backend_config(settings: Settings) -> BackendConfig:
    return BackendConfig(data_dir=settings.data_dir, database_url=settings.database_url)


async def open_runtime(settings: Settings) -> Runtime:
    config = backend_config(settings)
    backend = select_backend(config)
    if backend.name == "embedded":
        os.makedirs(settings.data_dir, exist_ok=True)
    log.info("storage backend: %s", describe_backend(config))
    store = backend.store()
    await store.open()
    upstream = Upstream(settings.upstream_url or "", settings.upstream_api_key, timeout=settings.upstream_timeout,
                        ca_bundle=settings.upstream_ca_bundle)
    memory = AgentMemory(store)
    return Runtime(settings=settings, store=store, memory=memory, upstream=upstream, backend=backend)


async def close_runtime(rt: Runtime) -> None:
    await rt.drain()
    await rt.upstream.close()
    if rt.longterm is not None:
        await rt.longterm.close()
    await rt.store.close()
