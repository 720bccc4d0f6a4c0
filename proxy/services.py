"""Start and stop the subsystems that run beside the HTTP routes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterator

from memory.compaction import ContextBudget
from proxy.metrics import counter_family
from memory.longterm import HttpEmbedder, LongTermMemory
from memory.heap_report import report_every
from memory.native_heap import trim_every
from memory.recall import live_indexer, reconcile
from proxy.chat.serving import TurnRunner
from proxy.chat.turn import TurnEnv
from proxy.coordination import AgentLocks, CoordinationDown, agent_locks
from proxy.resumable import RunLog
from proxy.runtime import Runtime
from proxy.tool_sync import ToolSync
from tools.custom import load_custom_tool
from tools.mcp import McpServers
from tools.registry import ToolRegistry, default_registry
from tools.sandbox import Sandbox, SandboxLimits

log = logging.getLogger("memproxy")


async def start_services(rt: Runtime) -> None:
    settings = rt.settings
    rt.sandbox = Sandbox(SandboxLimits(timeout=settings.tool_timeout, memory_mb=settings.tool_memory_mb),
                         private=(settings.data_dir,), pool=max(0, settings.tool_pool))
    locks = agent_locks(settings.redis_url, prefix=settings.redis_prefix, ttl=settings.lock_ttl)
    tools_version = await _tools_version(locks)  # read before loading: a write after it bumps past it
    rt.registry = await build_registry(rt)
    rt.mcp = McpServers(rt.store, rt.registry, call_timeout=settings.mcp_timeout,
                        connect_timeout=settings.mcp_connect_timeout)
    await rt.mcp.load()
    rt.tools = ToolSync(rt.store, rt.registry, rt.mcp, rt.sandbox, locks, lock_timeout=settings.agent_lock_timeout,
                        spawn=rt.spawn)
    rt.tools.version = tools_version
    # Built-in tools' results are echoes of memory, not worth finding; custom tools' results are new facts.
    skip = frozenset(tool.name for tool in rt.registry.tools() if tool.kind == "builtin")
    longterm = await _open_longterm(rt, skip)
    on_messages = live_indexer(rt.store, longterm, skip)

    async def summarize(body: dict[str, Any]) -> str:
        data = await rt.upstream.chat(body)
        return str(data["choices"][0]["message"].get("content") or "")

    rt.budget = ContextBudget(rt.memory, summarize, rt.spawn, default_window=settings.context_window)
    # Load the tokenizer now, off the event loop, rather than inside the first turn.
    await asyncio.to_thread(rt.budget.counter.load)
    env = TurnEnv(memory=rt.memory, upstream=rt.upstream, registry=rt.registry, longterm=longterm,
                  max_steps=settings.max_steps, spawn=rt.spawn, budget=rt.budget,
                  on_messages=on_messages, metrics=rt.metrics)
    rt.metrics.sample(lambda: _cache_families(rt))
    rt.heap_trimmer = asyncio.get_running_loop().create_task(_heap_upkeep(rt), name="malloc-trim")
    rt.turns = TurnRunner(env, lock_timeout=settings.agent_lock_timeout, keepalive=settings.keepalive_interval,
                          locks=locks, max_inline_bytes=settings.max_inline_bytes)
    if locks.shared:
        # Several processes share the store: writes bump agent versions in Redis, and announcements drop copies.
        rt.memory.coherence = locks
        rt.turns.leases.tools = rt.tools  # a lease that reads a newer tools version reloads tools first
        tools = rt.tools

        def dropped(versions: dict[str, int] | None) -> None:
            tools.heard(versions)
            rt.memory.dropped(versions)

        locks.on_drop(dropped)
    if settings.redis_url:
        rt.turns.runlog = RunLog(settings.redis_url, prefix=settings.redis_prefix, ttl=settings.resumable_ttl,
                                 max_events=settings.resumable_max_events, locks=rt.turns.locks)


async def _tools_version(locks: AgentLocks) -> int | None:
    try:
        return await locks.tools_version()
    except CoordinationDown:
        return None  # unknown: the first lease reloads the tools


async def build_registry(rt: Runtime) -> ToolRegistry:
    """The one registry of the server: the built-in tools, then every stored custom tool."""
    registry = default_registry()
    for record in await rt.store.list_tools():
        if record.name in registry:
            log.warning("custom tool %s (%s) is shadowed by a built-in tool and not loaded", record.name, record.id)
            continue
        load_custom_tool(registry, record, rt.sandbox)
    return registry


async def _open_longterm(rt: Runtime, skip: frozenset[str]) -> LongTermMemory:
    settings = rt.settings
    embedder = None
    if settings.embedding_model:
        embedder = HttpEmbedder(rt.upstream.base_url, settings.upstream_api_key, settings.embedding_model,
                                client=rt.upstream.client)
    else:
        log.info("no MEMPROXY_EMBEDDING_MODEL: recall and archival search are full-text only")
    longterm = rt.backend.longterm(embedder)
    await longterm.open()
    if embedder is not None and not longterm.vector_search:
        log.warning("the database has no pgvector extension: recall and archival search are full-text only")
    rt.longterm = longterm
    rt.memory.archival = longterm
    longterm.start_background()
    # Repairing the index can take a while on a big store; serve meanwhile (new turns index as usual).
    rt.reconciliation = {"state": "running"}
    rt.spawn(_repair_index(rt, longterm, skip), name="reconcile-index")
    return longterm


async def _repair_index(rt: Runtime, longterm: LongTermMemory, skip: frozenset[str]) -> None:
    try:
        report = await reconcile(rt.store, longterm, skip)
    except Exception:
        rt.reconciliation = {"state": "failed"}
        raise
    rt.reconciliation = {"state": "done", **report.as_dict()}
    if report.fixed:
        log.warning("search index repaired at start: %d messages re-indexed, %d orphan rows and %d deleted "
                    "agents' rows dropped", report.reindexed, report.orphan_messages, report.orphan_agents)


async def stop_services(rt: Runtime) -> None:
    if rt.mcp is not None:
        await rt.mcp.close()  # stops the stdio servers memproxy started
    if rt.sandbox is not None:
        await rt.sandbox.close()  # the waiting tool processes
    if rt.heap_trimmer is not None:
        rt.heap_trimmer.cancel()
        await asyncio.gather(rt.heap_trimmer, return_exceptions=True)
    if rt.turns is not None:
        await rt.turns.locks.close()
        if rt.turns.runlog is not None:
            await rt.turns.runlog.close()


async def _heap_upkeep(rt: Runtime) -> None:
    """Trim the native heap every MEMPROXY_MALLOC_TRIM_INTERVAL s; log memory figures if asked to."""
    probes = [probe for probe in (getattr(rt.store, "memory_figures", None),
                                  getattr(rt.longterm, "memory_figures", None)) if probe is not None]
    probes.append(rt.memory.memory_figures)
    await asyncio.gather(trim_every(rt.settings.malloc_trim_interval),
                         report_every(rt.settings.memory_report_interval, probes))


def _cache_families(rt: Runtime) -> Iterator[Any]:
    yield counter_family("memproxy_agent_cache_hits", "agent turns and reads served from the live cache",
                         rt.memory.hits)
    yield counter_family("memproxy_agent_cache_loads", "agents loaded from the store into the live cache",
                         rt.memory.loads)
    yield counter_family("memproxy_agent_cache_refreshes",
                         "loads that kept a copy another process made stale and read only the messages after it",
                         rt.memory.refreshes)
    yield counter_family("memproxy_agent_cache_version_reads",
                         "loads that first read the agent's version from Redis (neither a lease nor an announcement "
                         "gave it)", rt.memory.version_reads)
