"""memory.compaction: a compaction changes the live agent only through AgentMemory, so cache and store agree.

Run on a real DuckDB file and a real PostgreSQL schema (the `store` fixture of conftest.py). The
summarizer is the one collaborator that is not the store: a coroutine stands in for the upstream's chat call.
"""

from __future__ import annotations

from typing import Any

import pytest

from memory.agents import AgentMemory, LiveAgent
from memory.compaction import ContextBudget, is_summary
from memory.models import Agent, Changes, new_id
from memory.protocols import Store
from memory.store import Conflict


async def _summary(request: dict[str, Any]) -> str:
    return "They talked about lines of text."


async def agent_with_history(memory: AgentMemory, turns: int) -> LiveAgent:
    live = await memory.create_agent(Agent(id=new_id("agent"), name="talker", context_window_limit=200_000), [])
    for i in range(turns):
        batch = [memory.new_message(live, "user", f"line number {i}"),
                 memory.new_message(live, "assistant", f"noted, line {i}")]
        await memory.commit_turn(live.id, Changes(messages=batch, insert_only=True))
    return live


def budget_over(memory: AgentMemory) -> ContextBudget:
    def no_spawn(coro: Any, name: str | None = None) -> Any:
        raise AssertionError("an explicit compaction runs inline")

    return ContextBudget(memory, _summary, no_spawn)


def state(live: LiveAgent, budget: ContextBudget) -> tuple[int, int, list[tuple[str, str | None]], int]:
    """What the next turn reads of the agent: seqs, recall size, the in-context list and its token total."""
    return (live.next_seq, live.recall_count, [(m.id, m.content) for m in live.messages],
            live.in_context.tokens(live.messages, budget.counter))


async def test_after_a_compaction_the_live_agent_is_what_the_store_reloads(store: Store) -> None:
    memory = AgentMemory(store)
    budget = budget_over(memory)
    live = await agent_with_history(memory, 12)
    before = state(live, budget)

    evicted = await budget.compact(live, "system", [], [], must_fit=False, fraction=0.5)

    assert evicted >= 12 and is_summary(live.messages[0])
    after = state(live, budget)
    assert after[0] == before[0] + 1 and after[1] == before[1] + 1  # the summary took the next seq
    assert after[3] < before[3]  # the running token total followed the eviction
    assert after[0] == (await store.history_since(live.id, 0)).top + 1
    assert after[1] == await store.count_messages(live.id)
    reloaded = await AgentMemory(store).get(live.id)
    assert reloaded is not None
    assert state(reloaded, budget) == after  # nothing of the compaction lives only in the cache

    # A second compaction folds the first summary into the new one, and still agrees with the store.
    await budget.compact(live, "system", [], [], must_fit=False, fraction=0.5)
    assert [m for m in live.messages if is_summary(m)] == live.messages[:1]
    again = await AgentMemory(store).get(live.id)
    assert again is not None and state(again, budget) == state(live, budget)


async def test_a_compaction_whose_commit_fails_drops_the_cached_agent(store: Store) -> None:
    memory = AgentMemory(store)
    budget = budget_over(memory)
    live = await agent_with_history(memory, 6)
    # Another process wrote a turn behind this cache's back: it holds the seq the summary would take.
    other = AgentMemory(store)
    elsewhere = await other.get(live.id)
    assert elsewhere is not None
    await other.commit_turn(live.id, Changes(messages=[other.new_message(elsewhere, "user", "from elsewhere")],
                                             insert_only=True))

    with pytest.raises(Conflict):
        await budget.compact(live, "system", [], [], must_fit=False, fraction=0.5)

    assert memory.peek(live.id) is None  # the half-applied copy is gone, not served to the next turn
    fresh = await memory.get(live.id)
    assert fresh is not None and not any(is_summary(m) for m in fresh.messages)
    assert fresh.messages[-1].content == "from elsewhere"
    assert state(fresh, budget) == state(elsewhere, budget)
