"""The running totals behind every budget check and request body: each message encoded and counted once."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import orjson

from memory.agents import LiveAgent
from memory.compaction import ContextBudget
from memory.context import encode_messages, message_parts, splice_messages, wire_message
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


def message(i: int, agent_id: str = "agent-00000000-0000-4000-8000-000000000001") -> Message:
    return Message(id=f"message-{i}", agent_id=agent_id, seq=i, role="user" if i % 2 == 0 else "assistant",
                   content=f"line number {i}")


def live_with(n: int) -> LiveAgent:
    agent = Agent(id="agent-00000000-0000-4000-8000-000000000001", name="a", context_window_limit=8000)
    return LiveAgent(agent=agent, blocks=[], messages=[message(i) for i in range(n)], next_seq=n, recall_count=n)


def from_scratch(live: LiveAgent, counter: TokenCounter) -> tuple[int, list[Any]]:
    """What the totals must equal: every in-context message counted and encoded anew."""
    wires = [wire_message(m) for m in live.messages]
    return sum(counter.count_message(w) for w in wires), wires


def test_each_message_is_counted_once_and_a_turn_counts_only_what_is_new() -> None:
    spy = SpyCounter()
    budget, live = budget_with(spy), live_with(20)
    first = budget.measure(live, "system", [], [])
    assert spy.calls == 20
    assert budget.measure(live, "system", [], []).estimate == first.estimate and spy.calls == 20
    live.messages.append(message(20))
    grown = budget.measure(live, "system", [], [])
    assert spy.calls == 21 and grown.estimate > first.estimate
    encode_messages(live, "system", [], spy)
    assert spy.calls == 21  # the request body reuses the same entries


def reshape(live: LiveAgent, check: Callable[[], None]) -> None:
    """Call `check` on 30 messages, then after an append, an eviction, a summary put first, a reset, an append."""
    check()
    live.messages.append(message(30))
    check()
    live.messages = live.messages[10:]  # eviction of the oldest turns
    check()
    summary = Message(id="message-summary", agent_id=live.id, seq=99, role="system", content="summary so far")
    live.messages.insert(0, summary)  # one in, one out: same length, new first message
    del live.messages[1]
    check()
    live.messages = []  # reset
    check()
    live.messages.append(message(100))
    check()


def test_totals_follow_appends_evictions_and_a_summary_put_first() -> None:
    counter = TokenCounter()
    budget, live = budget_with(SpyCounter()), live_with(30)
    budget.counter = counter
    checks = []

    def check() -> None:
        expected_tokens, wires = from_scratch(live, counter)
        assert live.in_context.tokens(live.messages, counter) == expected_tokens
        body = orjson.loads(encode_messages(live, "sys", [{"role": "system", "content": "x"}], counter))
        assert body == [{"role": "system", "content": "sys"}, {"role": "system", "content": "x"}, *wires]
        checks.append(len(live.messages))

    reshape(live, check)
    assert checks == [30, 31, 21, 21, 0, 1]


def test_entries_of_messages_that_left_the_context_are_dropped() -> None:
    counter = TokenCounter()
    live = live_with(100)
    live.in_context.tokens(live.messages, counter)
    assert len(live.in_context) == 100
    live.messages = live.messages[-10:]
    live.in_context.tokens(live.messages, counter)
    assert len(live.in_context) == 10


def test_an_empty_context_encodes_to_the_system_prompt_alone() -> None:
    live = live_with(0)
    assert orjson.loads(encode_messages(live, "only", [])) == [{"role": "system", "content": "only"}]


def request_body(live: LiveAgent, counter: TokenCounter) -> list[bytes | memoryview]:
    return splice_messages(b'{"model":"m"', message_parts(live, "sys", [{"role": "system", "content": "x"}], counter))


def test_the_body_views_the_kept_history_and_equals_one_join_across_appends_evictions_and_a_summary() -> None:
    counter = TokenCounter()
    live = live_with(30)

    def check() -> None:
        body = request_body(live, counter)
        joined = encode_messages(live, "sys", [{"role": "system", "content": "x"}], counter)
        assert b"".join(body) == b'{"model":"m","messages":' + joined + b"}"
        # The history is not copied into the body: it is a view of the bytes the agent keeps.
        views = [piece for piece in body if isinstance(piece, memoryview)]
        assert len(views) == (1 if live.messages else 0)
        assert all(view.readonly and view.obj is live.in_context.joined(live.messages, counter) for view in views)

    reshape(live, check)


def test_the_history_grows_while_an_earlier_body_still_views_it() -> None:
    counter = TokenCounter()
    live = live_with(30)
    pending = request_body(live, counter)  # as if the transport had not sent it all yet
    sent = b"".join(pending)
    live.messages += [message(30), message(31)]
    grown = request_body(live, counter)
    assert b"".join(pending) == sent  # the body in flight is not changed under the transport
    _, wires = from_scratch(live, counter)
    assert orjson.loads(b"".join(grown)) == {"model": "m", "messages": [
        {"role": "system", "content": "sys"}, {"role": "system", "content": "x"}, *wires]}
    del pending
    live.messages.append(message(32))
    assert orjson.loads(b"".join(request_body(live, counter)))["messages"][-1] == wire_message(message(32))


def test_the_entries_of_a_loaded_history_leave_the_collectors_lists() -> None:
    """Every full collection walks what the collector tracks; an agent's entries (one per in-context message)
    must not be among it once collected, or a server holding many agents pays for them on each pass."""
    live = live_with(200)
    counter = TokenCounter()
    live.in_context.sync(live.messages, counter)
    gc.collect()
    entries = [live.in_context.entry(m, counter) for m in live.messages]
    assert entries and not any(gc.is_tracked(entry) for entry in entries)
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(entry) in tracked for entry in entries)
