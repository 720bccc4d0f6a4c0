"""The running totals behind every budget check and request body: each message encoded and counted once."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import orjson

from memory.agents import LiveAgent
from memory.compaction import Budget, ContextBudget
from memory.context import encode_messages, message_parts, splice_messages, wire_message
from memory.models import Agent, Message
from memory.tokens import TokenCounter
from memory.window import past_high_water


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


def test_a_loaded_history_adds_nothing_to_the_collectors_lists() -> None:
    """Every collection walks what the collector tracks; an agent's entries (one per in-context message) must not
    be among it, or a server holding many agents pays for them on each full pass. Synced as a first turn does
    (bounds, then counts), with no collection in between: a young collection that finds them late is a pause too.
    """
    counter = TokenCounter()

    def tracked_after_sync(n: int) -> int:
        live = live_with(n)
        gc.collect()
        gc.disable()
        try:
            before = len(gc.get_objects())
            live.in_context.joined(live.messages, counter)  # a turn's body: new messages at their bounds
            assert live.in_context.bounded == n
            live.in_context.settle(counter)  # ... counted once the request is out
            assert live.in_context.bounded == 0 and len(live.in_context) == n
            return len(gc.get_objects()) - before
        finally:
            gc.enable()

    tracked_after_sync(20)  # the tokenizer's first use loads it
    small = tracked_after_sync(20)
    assert tracked_after_sync(2000) <= small + 2  # nothing per message


# --- upper bounds before the request, counts after -------------------------------------------------------

BOUND_TEXTS = [
    "", "hi", "Quick question: what did I say about my trip to Lyon in April?", "   leading and    inner   spaces  ",
    "12345678901234567890", "naïve café déjà vu", "日本語のテキストと漢字", "emoji 🎉🚀👩‍👩‍👧 and more 🇫🇷",
    "def f(x):\n    return {'a': [1, 2, 3]}\n", "word " * 400, "\n\n\t\t" * 50, "<|endoftext|> stays text",
]


def test_the_bound_of_a_text_message_is_never_below_its_count() -> None:
    counter = TokenCounter()
    for text in BOUND_TEXTS:
        for wire in ({"role": "user", "content": text}, {"role": "user", "content": text, "name": "ada_lovelace"},
                     {"role": "tool", "tool_call_id": "call_8f2a9c1d", "content": text},
                     {"role": "assistant", "content": text or None}, {"role": "system", "content": text}):
            bound = counter.message_bound(wire)
            assert bound is not None and bound >= counter.count_message(wire), wire


def test_messages_a_bound_could_miss_are_not_bounded() -> None:
    counter = TokenCounter()
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}
    calls = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert counter.message_bound(image) is None and counter.message_bound(calls) is None


def test_bounded_totals_hold_at_least_the_counts_and_settle_to_them() -> None:
    spy = SpyCounter()
    live = live_with(30)
    exact, _ = from_scratch(live, TokenCounter())
    bounded = live.in_context.tokens(live.messages, spy, bound_ok=True)
    assert spy.calls == 0 and live.in_context.bounded == 30 and bounded >= exact
    assert live.in_context.settle(spy) == bounded - exact
    assert spy.calls == 30 and live.in_context.bounded == 0
    assert live.in_context.tokens(live.messages, spy) == exact and spy.calls == 30
    live.messages.append(message(30))
    encode_messages(live, "system", [], spy)  # a request body: it needs no count
    assert spy.calls == 30 and live.in_context.bounded == 1
    assert live.in_context.message_tokens(message(30), spy) == TokenCounter().count_message(wire_message(message(30)))
    assert spy.calls == 31 and live.in_context.bounded == 0


def test_exact_totals_after_bodies_built_across_appends_evictions_and_a_summary() -> None:
    """Each step builds a body first (new messages bounded), then asks for exact tokens: a rebuild in between
    must neither lose a bounded entry's count nor take it off twice."""
    counter = TokenCounter()
    live = live_with(30)
    checks = []

    def check() -> None:
        encode_messages(live, "sys", [], counter)
        expected, _ = from_scratch(live, counter)
        assert live.in_context.tokens(live.messages, counter, bound_ok=True) >= expected
        assert live.in_context.tokens(live.messages, counter) == expected and live.in_context.bounded == 0
        checks.append(len(live.messages))

    reshape(live, check)
    assert checks == [30, 31, 21, 21, 0, 1]


def test_a_settle_with_a_limit_counts_the_oldest_bounds_and_the_slices_add_up_to_one_settle() -> None:
    counter = TokenCounter()
    live = live_with(50)
    live.in_context.joined(live.messages, counter)  # all fifty at their bounds, as a freshly loaded agent's turn
    bounded_total = live.in_context.tokens(live.messages, counter, bound_ok=True)
    exact, _ = from_scratch(live, counter)
    dropped = [live.in_context.settle(counter, limit=20) for _ in range(3)]
    assert live.in_context.bounded == 0 and dropped[2] > 0
    assert sum(dropped) == bounded_total - exact == bounded_total - live.in_context.tokens(live.messages, counter)
    # Oldest first: after one slice the first twenty are counts, the rest still bounds
    again = live_with(50)
    again.in_context.joined(again.messages, counter)
    again.in_context.settle(counter, limit=20)
    assert again.in_context.bounded == 30
    wires = [wire_message(m) for m in again.messages]
    assert [again.in_context.entry(m, counter)[1] for m in again.messages[:20]] == [
        counter.count_message(w) for w in wires[:20]]
    assert [again.in_context.entry(m, counter)[1] for m in again.messages[20:]] == [
        counter.message_bound(w) for w in wires[20:]]


def test_an_estimate_takes_off_only_its_own_bounds_and_calls_back_once_it_is_a_count() -> None:
    counter = TokenCounter()
    live = live_with(50)
    ctx = live.in_context
    first_total = ctx.tokens(live.messages, counter, bound_ok=True)  # a loaded history, all fifty at bounds
    first = ctx.estimate(first_total + 7)  # a request: its fixed part (7) and the totals
    heard: list[int] = []
    first.when_exact(heard.append)
    ctx.settle(counter, limit=20)
    live.messages.append(message(50))  # the next request adds one more, at its bound too
    second = ctx.estimate(ctx.tokens(live.messages, counter, bound_ok=True) + 7)
    assert not first.exact and not second.exact and heard == []
    ctx.settle(counter, limit=29)
    assert not first.exact and not second.exact and heard == []
    ctx.settle(counter, limit=20)  # the last of the fifty and the one after: both are counts now
    exact50 = sum(counter.count_message(wire_message(m)) for m in live.messages[:50])
    exact51 = exact50 + counter.count_message(wire_message(live.messages[50]))
    assert first.exact and first.tokens == exact50 + 7 and heard == [exact50 + 7]
    assert second.exact and second.tokens == exact51 + 7 == ctx.tokens(live.messages, counter) + 7
    ctx.settle(counter)
    assert heard == [exact50 + 7]  # called once
    late: list[int] = []
    second.when_exact(late.append)  # an estimate already exact answers at once
    third = ctx.estimate(exact51)  # nothing bounded: exact from the start
    third.when_exact(late.append)
    assert late == [exact51 + 7, exact51]


def test_estimates_holding_bounds_of_messages_gone_are_never_called() -> None:
    counter = TokenCounter()
    live = live_with(40)
    ctx = live.in_context
    estimate = ctx.estimate(ctx.tokens(live.messages, counter, bound_ok=True))
    heard: list[int] = []
    estimate.when_exact(heard.append)
    live.messages[:] = live.messages[10:]  # a reset of the history before anything was counted
    assert ctx.tokens(live.messages, counter, bound_ok=True) > 0 and ctx.bounded == 30
    later = ctx.estimate(ctx.tokens(live.messages, counter, bound_ok=True))
    ctx.settle(counter)
    assert heard == [] and not estimate.exact  # its bounds of the ten dropped were never counted
    assert later.exact and later.tokens == ctx.tokens(live.messages, counter)
    live.messages.extend(message(i) for i in range(40, 60))  # later bounds counted are none of its business
    ctx.tokens(live.messages, counter, bound_ok=True)
    ctx.settle(counter)
    assert heard == [] and not estimate.exact and ctx.bounded == 0


async def test_a_settle_soon_chain_counts_a_slice_per_pass_and_one_chain_per_agent() -> None:
    counter = SpyCounter()
    live = live_with(50)
    ctx = live.in_context
    ctx.joined(live.messages, counter)
    for _ in range(3):
        ctx.settle_soon(counter, 20)  # three turns asking: one chain
    assert counter.calls == 0
    await asyncio.sleep(0)
    assert counter.calls == 20 and ctx.bounded == 30
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert counter.calls == 50 and ctx.bounded == 0
    await asyncio.sleep(0)
    assert counter.calls == 50
    live.messages.append(message(50))
    ctx.joined(live.messages, counter)
    ctx.settle_soon(counter, 20)  # a chain that ended starts again for new bounds
    await asyncio.sleep(0)
    assert counter.calls == 51 and ctx.bounded == 0


async def test_catching_up_on_a_loaded_history_takes_a_step_per_pass_and_ends_as_one_sync() -> None:
    counter = TokenCounter()
    live, whole = live_with(450), live_with(450)
    task = asyncio.ensure_future(live.in_context.catch_up(live.messages, counter, 100))
    seen = []
    while not task.done():
        await asyncio.sleep(0)
        seen.append(len(live.in_context))
    assert seen[:4] == [100, 200, 300, 400]  # one step per pass of the loop; the last 50 are left to the sync
    assert live.in_context.bounded == 400
    joined = live.in_context.joined(live.messages, counter)
    assert bytes(joined) == bytes(whole.in_context.joined(whole.messages, counter))
    assert live.in_context.tokens(live.messages, counter) == whole.in_context.tokens(whole.messages, counter)
    await live.in_context.catch_up(live.messages, counter, 100)  # nothing to catch up: no pass taken
    live.messages[:] = live.messages[200:]  # reshaped: caught up again from the start
    await live.in_context.catch_up(live.messages, counter, 100)
    assert bytes(live.in_context.joined(live.messages, counter)) == b",".join(
        orjson.dumps(wire_message(m)) for m in live.messages)


def test_bounded_entries_through_an_eviction_count_once_and_evicted_ones_are_forgotten() -> None:
    counter = TokenCounter()
    live = live_with(30)
    live.in_context.tokens(live.messages, counter)
    live.messages += [message(30), message(31)]
    encode_messages(live, "sys", [], counter)  # both new messages bounded
    assert live.in_context.bounded == 2
    live.messages = live.messages[10:]  # an eviction, then an exact count: the totals are rebuilt meanwhile
    assert live.in_context.tokens(live.messages, counter) == from_scratch(live, counter)[0]
    live.messages.append(message(32))
    encode_messages(live, "sys", [], counter)
    live.messages = live.messages[:-1]  # the bounded message leaves before it was counted
    encode_messages(live, "sys", [], counter)
    assert live.in_context.bounded == 0
    assert live.in_context.tokens(live.messages, counter) == from_scratch(live, counter)[0]


def ending_long(role: str, limit: int) -> LiveAgent:
    """Ten short messages, then a long text of `role` (its byte bound ~4x its count), in a `limit`-token window."""
    live = live_with(10)
    live.agent.context_window_limit = limit
    live.messages.append(Message(id="message-long", agent_id=live.id, seq=50, role=role, content="word " * 400))
    return live


def window_where(role: str, holds: Callable[[Budget], bool]) -> int:
    """A window in which `holds` is true of the budget with the long message at its bound, false of its count."""
    budget = budget_with(SpyCounter())

    def measured(limit: int, bound_ok: bool) -> Budget:
        return budget.measure(ending_long(role, limit), "system", [], [], bound_ok=bound_ok)

    return next(n for n in range(500, 20_000, 50) if holds(measured(n, True)) and not holds(measured(n, False)))


def test_a_budget_that_fits_only_by_count_does_not_compact() -> None:
    """The bound is only a shortcut: when it does not fit, the budget counts before deciding to compact (this
    budget has no memory or summarizer, so a compaction would raise)."""
    live = ending_long("user", window_where("user", lambda b: not b.fits))
    fitted = asyncio.run(budget_with(SpyCounter()).ensure_fits(live, lambda: "system", [], []))
    assert fitted.fits and live.in_context.bounded == 0 and len(live.messages) == 11


def test_a_reply_past_the_high_water_mark_only_by_its_bound_starts_no_compaction() -> None:
    """`after_turn` takes the reply at its bound, and counts it before starting a compaction (this budget has no
    way to spawn one, so starting it would raise)."""
    spy = SpyCounter()
    budget = budget_with(spy)
    live = ending_long("assistant", window_where(
        "assistant", lambda b: past_high_water(b.total, b.window, budget.high_water)))
    budget.after_turn(live, "system", [])
    assert live.in_context.bounded == 0 and spy.calls == 11 and "compaction" not in live.extra
