"""A turn checks its budget with an upper bound of the new message's tokens and counts it once the request is out.

The tokenizer's tables go cold while a process idles between turns (a short message: ~5 us to count in cache,
~100 us after 300 ms idle, measured here), so counting before the upstream call was on every first token's
path. The whole app runs in process (its lifespan, DuckDB, the journal) against a real upstream socket server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.relay_cost import CLIENT_HEADERS, call, running_app
from bench.turn_cost import agent_answer, make_agents, turn_body
from memory.context import wire_message
from memory.tokens import TokenCounter
from proxy.chat.new_input import split_new_input
from proxy.chat.protocol import parse_chat_request
from proxy.chat.sinks import CollectSink
from proxy.chat import prompt as prompt_module
from proxy.chat.prompt import SETTLE_SLICE
from proxy.chat.turn import Turn

TEXT = "Before you answer: my sister lands in Lyon on the 14th, flight AF 7642, and she is vegetarian."


class TextSpy(TokenCounter):
    """The real counter, keeping every message text it was asked to count."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[Any] = []

    def count_message(self, msg: Any) -> int:
        self.texts.append(msg.get("content"))
        return super().count_message(msg)


class SlowCounter(TokenCounter):
    """The real counter, a millisecond per message: a history that takes long to count."""

    def count_message(self, msg: Any) -> int:
        time.sleep(0.001)
        return super().count_message(msg)


async def test_new_messages_are_counted_after_the_request_body_is_built() -> None:
    async with running_app(agent_answer(), prefix="memproxy-deferred-count-") as (app, _):
        (agent_id,) = await make_agents(app, 1)
        await call(app, turn_body(agent_id, 0), CLIENT_HEADERS)
        rt = app.state.rt
        spy = TextSpy()
        rt.turns.env.budget.counter = spy
        live = await rt.memory.get(agent_id)
        reply = live.messages[-1]
        assert reply.role == "assistant" and live.in_context.bounded == 1  # the last turn's reply: not counted yet
        chat = parse_chat_request({"model": agent_id, "messages": [{"role": "user", "content": TEXT}]})
        turn = Turn(rt.turns.env, live, chat, split_new_input(chat.messages), CollectSink(), {})
        await turn._take_input()
        body = b"".join(await turn._request_body())
        assert TEXT.encode() in body
        assert spy.texts == [] and live.in_context.bounded == 2  # the budget took both at their bounds
        assert turn.prompt.estimate is not None and not turn.prompt.estimate.exact
        estimate = turn.prompt.estimate.tokens
        await asyncio.sleep(0)  # the turn's first wait: the upstream's answer
        assert sorted(spy.texts) == sorted([TEXT, reply.content]) and live.in_context.bounded == 0
        wires = [wire_message(m) for m in live.messages[-2:]]
        assert wires[1]["content"] == TEXT
        # The estimate the upstream's usage calibrates is the count, not the bound.
        assert turn.prompt.estimate.exact
        assert estimate - turn.prompt.estimate.tokens == sum(spy.message_bound(w) - spy.count_message(w) for w in wires) > 0


async def test_turns_over_http_keep_the_totals_exact_for_every_reader() -> None:
    async with running_app(agent_answer(), prefix="memproxy-deferred-count-") as (app, upstream):
        (agent_id,) = await make_agents(app, 1)
        for i in range(5):
            assert await call(app, turn_body(agent_id, i), CLIENT_HEADERS) > 0
        rt = app.state.rt
        live = await rt.memory.get(agent_id)
        assert upstream[0] == 5 and len(live.messages) >= 10
        assert live.in_context.bounded <= 1  # at most the last reply waits for the next turn to count it
        counter = TokenCounter()
        exact = sum(counter.count_message(wire_message(m)) for m in live.messages)
        assert live.in_context.tokens(live.messages, counter) == exact and live.in_context.bounded == 0


async def reloaded_with_history(app: Any, turns: int) -> Any:
    """An agent given `turns` turns over HTTP, then dropped from the cache and loaded again from the store."""
    (agent_id,) = await make_agents(app, 1)
    for i in range(turns):
        assert await call(app, turn_body(agent_id, i), CLIENT_HEADERS) > 0
    rt = app.state.rt
    await rt.memory.settled(agent_id)
    rt.memory.forget(agent_id)
    live = await rt.memory.get(agent_id)
    assert len(live.in_context) == 0 and live.in_context.bounded == 0  # nothing encoded or counted yet
    return live


async def test_a_freshly_loaded_history_is_counted_in_slices_once_the_request_is_out() -> None:
    async with running_app(agent_answer(), prefix="memproxy-deferred-count-") as (app, _):
        live = await reloaded_with_history(app, SETTLE_SLICE * 5 // 8)
        n = len(live.messages)
        assert SETTLE_SLICE < n + 1 <= 2 * SETTLE_SLICE
        rt = app.state.rt
        spy = TextSpy()
        rt.turns.env.budget.counter = spy
        chat = parse_chat_request({"model": live.id, "messages": [{"role": "user", "content": TEXT}]})
        turn = Turn(rt.turns.env, live, chat, split_new_input(chat.messages), CollectSink(), {})
        await turn._take_input()
        await turn._request_body()
        assert spy.texts == [] and live.in_context.bounded == n + 1  # the whole history went in at its bounds
        assert turn.prompt.estimate is not None
        estimate = turn.prompt.estimate.tokens
        await asyncio.sleep(0)  # the turn's first wait: one slice, the oldest messages
        assert len(spy.texts) == SETTLE_SLICE and live.in_context.bounded == n + 1 - SETTLE_SLICE
        assert TEXT not in spy.texts and not turn.prompt.estimate.exact
        await asyncio.sleep(0)  # the next pass of the loop: the rest
        assert live.in_context.bounded == 0 and len(spy.texts) == n + 1 and spy.texts[-1] == TEXT
        wires = [wire_message(m) for m in live.messages]
        assert turn.prompt.estimate.exact
        assert estimate - turn.prompt.estimate.tokens == sum(spy.message_bound(w) - spy.count_message(w) for w in wires) > 0


async def test_the_reply_does_not_wait_for_a_loaded_history_and_usage_calibrates_against_its_count(
        monkeypatch: Any) -> None:
    async with running_app(agent_answer(), prefix="memproxy-deferred-count-") as (app, _):
        live = await reloaded_with_history(app, 200)  # ~400 messages
        # Slices of two messages, each count taking a millisecond: ~0.4 s to count the history, a pass of the
        # loop at a time, where the turn's own waits take a few milliseconds.
        monkeypatch.setattr(prompt_module, "SETTLE_SLICE", 2)
        budget = app.state.rt.turns.env.budget
        budget.counter = SlowCounter()
        checked: list[int] = []
        seen: list[tuple[int, int, int]] = []
        ensure_fits, observe = budget.ensure_fits, budget.observe

        async def checking(*args: Any, **kwargs: Any) -> Any:
            result = await ensure_fits(*args, **kwargs)
            checked.append(result.estimate)
            return result

        def watching(live_agent: Any, estimate: int, reported: int) -> None:
            seen.append((estimate, reported, live_agent.in_context.bounded))
            observe(live_agent, estimate, reported)

        budget.ensure_fits, budget.observe = checking, watching
        assert await call(app, turn_body(live.id, 1000), CLIENT_HEADERS) > 0
        # The whole reply, usage included, reached the client while the history was still being counted, and the
        # usage was not taken against an estimate still holding bounds.
        assert live.in_context.bounded > 0 and seen == []
        passes = 0
        while live.in_context.bounded and passes < 10_000:
            await asyncio.sleep(0)
            passes += 1
        assert live.in_context.bounded == 0 and passes > 10
        [(estimate, reported, bounded)] = seen
        assert bounded == 0 and reported > 0
        # The budget took the history and the new message at their bounds; the calibrated estimate is their count.
        counter = TokenCounter()
        sent = [wire_message(m) for m in live.messages[:-1]]  # the reply came after
        assert checked[0] - estimate == sum(counter.message_bound(w) - counter.count_message(w) for w in sent) > 0


async def test_a_loaded_history_is_encoded_a_step_per_pass_before_the_budget_check(monkeypatch: Any) -> None:
    async with running_app(agent_answer(), prefix="memproxy-deferred-count-") as (app, _):
        live = await reloaded_with_history(app, 20)  # ~40 messages, none encoded yet
        monkeypatch.setattr(prompt_module, "SYNC_STEP", 4)
        budget = app.state.rt.turns.env.budget
        ensure_fits = budget.ensure_fits
        encoded_at_check: list[int] = []

        async def checking(live_agent: Any, *args: Any, **kwargs: Any) -> Any:
            encoded_at_check.append(len(live_agent.in_context))
            return await ensure_fits(live_agent, *args, **kwargs)

        budget.ensure_fits = checking
        passes, building = 0, True

        async def ticking() -> None:
            nonlocal passes
            while building:
                passes += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(ticking())
        chat = parse_chat_request({"model": live.id, "messages": [{"role": "user", "content": TEXT}]})
        turn = Turn(app.state.rt.turns.env, live, chat, split_new_input(chat.messages), CollectSink(), {})
        await turn._take_input()
        n, before = len(live.messages), passes
        body = b"".join(await turn._request_body())
        building = False
        await ticker
        # The budget check met the history encoded but for its last step, and other tasks ran between the steps.
        [encoded] = encoded_at_check
        assert n > 30 and n - 4 <= encoded < n
        assert passes - before >= (n - 4) // 4
        assert len(live.in_context) == n and TEXT.encode() in body
        assert all(m.content.encode() in body for m in live.messages if m.content and m.role == "user")
