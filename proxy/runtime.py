"""Everything a request needs, created once at start-up and shared by the routes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from memory.agents import AgentMemory
from memory import secretbox
from memory.backends import Backend, BackendConfig, describe_backend, select_backend
from memory.datadir import open_private_dir, release_private_dir
from memory.protocols import Claim, LongTermMemory, Store
from proxy.config import Settings
from proxy.metrics import Metrics
from proxy.upstream import Upstream

if TYPE_CHECKING:
    from memory.compaction import ContextBudget
    from proxy.chat.serving import TurnRunner
    from proxy.tool_sync import ToolSync
    from tools.mcp import McpServers
    from tools.registry import ToolRegistry
    from tools.sandbox import Sandbox

log = logging.getLogger("memproxy")
T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    memory: AgentMemory
    upstream: Upstream
    backend: Backend
    # Set by start_services (proxy/services.py) before the first request; reading one earlier is a bug.
    longterm: LongTermMemory | None = None  # opened once the upstream URL is final
    turns: TurnRunner = field(init=False, repr=False)
    registry: ToolRegistry = field(init=False, repr=False)  # the one registry of the server
    sandbox: Sandbox = field(init=False, repr=False)  # where custom tools run
    mcp: McpServers = field(init=False, repr=False)  # the MCP servers and their pooled connections
    budget: ContextBudget = field(init=False, repr=False)
    tools: ToolSync = field(init=False, repr=False)  # the registry and MCP servers kept current across processes
    heap_trimmer: asyncio.Task[None] | None = None  # memory.native_heap.trim_every
    reconciliation: dict[str, str | int] = field(default_factory=dict)  # what start-up repaired in the search index
    metrics: Metrics = field(default_factory=Metrics)
    private_dir: bool = False  # holds the data dir's private umask (the embedded backend), released at close
    claim: Claim | None = None  # this process's claim on a shared database (Backend.claim)
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
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


def secret_box(settings: Settings, backend_name: str) -> secretbox.SecretBox | None:
    """The key tool variables and MCP credentials are sealed with: the configured one, else (embedded backend
    only) the data dir's key file; None on PostgreSQL without MEMPROXY_SECRET_KEY (values stored plain).

    A key file beside one replica would differ from the next replica's, and a key kept in the database
    protects nothing: on PostgreSQL encryption needs the operator's key, shared by every replica.
    """
    if backend_name == "embedded" or settings.secret_key:
        return secretbox.SecretBox(secretbox.load_key(settings.data_dir, settings.secret_key))
    return None


def backend_config(settings: Settings) -> BackendConfig:
    return BackendConfig(
        data_dir=settings.data_dir, database_url=settings.database_url,
        duckdb_memory_limit=settings.duckdb_memory_limit, search_cache_bytes=settings.search_cache_mb * 1024 * 1024,
        search_optimize_interval=settings.search_optimize_interval,
        search_reopen_interval=settings.search_reopen_interval)


async def open_runtime(settings: Settings) -> Runtime:
    config = backend_config(settings)
    backend = select_backend(config)
    # Only the embedded backend keeps files: on PostgreSQL the data dir is neither made nor locked down.
    private_dir = backend.name == "embedded"
    if private_dir:
        open_private_dir(settings.data_dir)
    log.info("storage backend: %s", describe_backend(config))
    store = backend.store()
    store.secret_box = secret_box(settings, backend.name)
    if store.secret_box is None:
        log.warning("MEMPROXY_SECRET_KEY is not set: agents' tool variables and MCP credentials are stored "
                    "unencrypted in PostgreSQL; set it (the same on every replica) to encrypt them")
    try:
        await store.open()
    except BaseException:
        if private_dir:
            release_private_dir()
        raise
    try:
        claim = await backend.claim(shared=bool(settings.redis_url))
    except BaseException:
        await store.close()
        raise
    upstream = Upstream(settings.upstream_url or "", settings.upstream_api_key, timeout=settings.upstream_timeout,
                        ca_bundle=settings.upstream_ca_bundle)
    memory = AgentMemory(store, capacity=settings.agent_cache_size)
    return Runtime(settings=settings, store=store, memory=memory, upstream=upstream, backend=backend,
                   private_dir=private_dir, claim=claim)


async def close_runtime(rt: Runtime) -> None:
    try:
        await rt.drain()
        await rt.upstream.close()
        if rt.longterm is not None:
            await rt.longterm.close()
        await rt.store.close()
        if rt.claim is not None:
            await rt.claim.close()
    finally:
        if rt.private_dir:
            release_private_dir()
