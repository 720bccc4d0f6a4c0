"""Start and stop the subsystems that run beside the HTTP routes."""

from __future__ import annotations

import asyncio
import logging

from memory.compaction import ContextBudget
from memory.longterm import HttpEmbedder, LongTermMemory
from memory.recall import index_messages, reconcile
from proxy.chat.serving import TurnRunner
from proxy.chat.turn import TurnEnv
from proxy.coordination import agent_locks
from proxy.runtime import Runtime
from tools.registry import default_registry

log = logging.getLogger("memproxy")


async def start_services(rt: Runtime) -> None:
    settings = rt.settings
    rt.registry = default_registry()
    skip = frozenset(rt.registry.names())  # our own tools' results are echoes, not worth finding
    longterm = await _open_longterm(rt, skip)

    async def summarize(body: dict) -> str:
        data = await rt.upstream.chat(body)
        return str(data["choices"][0]["message"].get("content") or "")

    rt.budget = ContextBudget(rt.memory, summarize, rt.spawn, default_window=settings.context_window)
    # Load the tokenizer now, off the event loop, rather than inside the first turn.
    await asyncio.to_thread(rt.budget.counter.load)
    env = TurnEnv(memory=rt.memory, upstream=rt.upstream, registry=rt.registry, longterm=longterm,
                  max_steps=settings.max_steps, spawn=rt.spawn, budget=rt.budget,
                  on_messages=lambda messages: index_messages(longterm, messages, skip))
    rt.turns = TurnRunner(env, lock_timeout=settings.agent_lock_timeout, keepalive=settings.keepalive_interval,
                          locks=agent_locks(settings.redis_url), max_inline_bytes=settings.max_inline_bytes)


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
    if rt.turns is not None:
        await rt.turns.locks.close()
