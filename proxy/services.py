"""Start and stop the subsystems that run beside the HTTP routes."""

from __future__ import annotations

import asyncio

from memory.compaction import ContextBudget
from proxy.chat.serving import TurnRunner
from proxy.chat.turn import TurnEnv
from proxy.coordination import agent_locks
from proxy.runtime import Runtime
from tools.registry import default_registry


async def start_services(rt: Runtime) -> None:
    settings = rt.settings
    rt.registry = default_registry()

    async def summarize(body: dict) -> str:
        data = await rt.upstream.chat(body)
        return str(data["choices"][0]["message"].get("content") or "")

    rt.budget = ContextBudget(rt.memory, summarize, rt.spawn)
    # Load the tokenizer now, off the event loop, rather than inside the first turn.
    await asyncio.to_thread(rt.budget.counter.load)
    env = TurnEnv(memory=rt.memory, upstream=rt.upstream, registry=rt.registry, longterm=rt.longterm,
                  max_steps=settings.max_steps, spawn=rt.spawn, budget=rt.budget)
    rt.turns = TurnRunner(env, lock_timeout=settings.agent_lock_timeout, keepalive=settings.keepalive_interval,
                          locks=agent_locks(settings.redis_url))


async def stop_services(rt: Runtime) -> None:
    if rt.turns is not None:
        await rt.turns.locks.close()
