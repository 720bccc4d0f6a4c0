"""The per-agent token counts behind every budget check: each message is counted once, then read back."""

from __future__ import annotations

from typing import Any

from memory.agents import LiveAgent
from memory.compaction import ContextBudget
from memory.models import Agent, Message
from memory.tokens import TokenCounter


class SpyCounter(TokenCounter):
    """The real counter, counting how often it is asked to count a message."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def count_message(self, msg: Any) -> int:
        self.calls += 1
        return super().count_message(msg)


def budget_with(spy: SpyCounter) -> ContextBudget:
    budget = ContextBudget(memory=None, summarize=None, spawn=None)  # type: ignore[arg-type]
    budget.counter = spy
    return budget


def live_with(n: int) -> LiveAgent:
    agent = Agent(id="agent-00000000-0000-4000-8000-000000000001", name="a", context_window_limit=8000)
    messages = [Message(id=f"message-{i}", agent_id=agent.id, seq=i, role="user" if i % 2 == 0 else "assistant",
                        content=f"line number {i}") for i in range(n)]
    return LiveAgent(agent=agent, blocks=[], messages=messages, next_seq=n, recall_count=n)


def test_each_message_is_counted_once_and_a_turn_counts_only_what_is_new() -> None:
    spy = SpyCounter()
    budget, live = budget_with(spy), live_with(20)
    first = budget.measure(live, "system", [], [])
    assert spy.calls == 20
    assert budget.measure(live, "system", [], []).estimate == first.estimate and spy.calls == 20
    live.messages.append(Message(id="message-20", agent_id=live.id, seq=20, role="user", content="new input"))
    grown = budget.measure(live, "system", [], [])
    assert spy.calls == 21 and grown.estimate > first.estimate


def test_a_message_cut_short_is_counted_again() -> None:
    spy = SpyCounter()
    budget, live = budget_with(spy), live_with(2)
    counts = budget.counts_of(live)
    before = budget.message_tokens(live.messages[1], counts)
    live.messages[1].content = "line"
    assert budget.message_tokens(live.messages[1], counts) < before and spy.calls == 2  # once per version


def test_counts_of_evicted_messages_are_dropped() -> None:
    budget, live = budget_with(SpyCounter()), live_with(100)
    budget.measure(live, "system", [], [])
    live.messages = live.messages[-10:]
    counts = budget.counts_of(live)
    assert set(counts) == {m.id for m in live.messages}
