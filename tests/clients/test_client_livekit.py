"""LiveKit Agents' `openai.LLM.with_letta` (livekit-plugins-openai) against a memproxy agent.

A LiveKit voice agent keeps a growing ChatContext and resends it whole on every `chat()`; it retries a
request that streamed nothing within its timeout, so the agent must never hear one user turn twice.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from client_support import ANSWER, PARIS, ROUND_TRIP_SCRIPT, history, require, runs, user_texts, weather
from helpers import create_agent

require("livekit.plugins.openai", "livekit-agents + livekit-plugins-openai")

from livekit.agents import APIConnectOptions  # noqa: E402
from livekit.agents.llm import ChatContext, FunctionCall, FunctionCallOutput, function_tool  # noqa: E402
from livekit.plugins import openai as lk_openai  # noqa: E402

INSTRUCTIONS = "You are a friendly voice assistant. Keep answers short."


@function_tool
async def get_weather(city: str) -> dict[str, Any]:
    """Current weather for a city.

    Args:
        city: the city's name
    """
    return weather(city)


def sim(options: dict[str, Any]) -> str:
    # LiveKit sends no per-turn headers: the simulator is scripted from the user's text.
    return f"[[sim:{json.dumps(options)}]]"


def letta_llm(server: Any, agent: str, suffix: str) -> Any:
    return lk_openai.LLM.with_letta(agent_id=agent, base_url=server.base_url + suffix, api_key="unused")


async def chat(llm: Any, ctx: ChatContext, **kwargs: Any) -> Any:
    async with llm.chat(chat_ctx=ctx, tools=[get_weather], **kwargs) as stream:
        return await stream.collect()


@pytest.mark.parametrize("suffix", ["/v1", "/v1/chat/completions"])
async def test_livekit_multi_turn_conversation_with_a_function_tool(server, suffix: str) -> None:
    agent = create_agent(server.base_url)
    llm = letta_llm(server, agent, suffix)
    ctx = ChatContext.empty()
    ctx.add_message(role="system", content=INSTRUCTIONS)
    users = ["Hi, who are you? " + sim({"reply": "I am your memory agent, happy to help you today."}),
             "What is the weather in Paris? " + sim({"script": ROUND_TRIP_SCRIPT}),
             "Great, thanks. " + sim({"reply": "You are welcome."})]
    try:
        ctx.add_message(role="user", content=users[0])
        first = await chat(llm, ctx)
        assert first.text == "I am your memory agent, happy to help you today." and not first.tool_calls
        assert first.usage is not None and first.usage.total_tokens > 0
        # The user barged in: LiveKit keeps only what was spoken, flagged as interrupted.
        ctx.add_message(role="assistant", content="I am your memory agent,", interrupted=True)

        ctx.add_message(role="user", content=users[1])
        asked = await chat(llm, ctx)
        assert asked.text == ""
        [call] = asked.tool_calls
        assert call.name == "get_weather" and json.loads(call.arguments) == PARIS
        output = await get_weather(**json.loads(call.arguments))
        ctx.items.append(FunctionCall(call_id=call.call_id, name=call.name, arguments=call.arguments))
        ctx.items.append(FunctionCallOutput(call_id=call.call_id, name=call.name, output=json.dumps(output),
                                            is_error=False))
        answered = await chat(llm, ctx)
        assert answered.text == ANSWER and not answered.tool_calls
        ctx.add_message(role="assistant", content=answered.text)

        ctx.add_message(role="user", content=users[2])
        last = await chat(llm, ctx)
        assert last.text == "You are welcome."
    finally:
        await llm.aclose()

    stored = history(server.base_url, agent)
    assert [m["content"] for m in stored if m["message_type"] == "user_message"] == users
    assert [m["message_type"] for m in stored] == [
        "user_message", "assistant_message",
        "user_message", "tool_call_message", "tool_return_message", "assistant_message",
        "user_message", "assistant_message"]
    assert stored[1]["content"] == "I am your memory agent, happy to help you today."  # the agent's own copy
    assert json.loads(stored[4]["tool_return"]) == weather("Paris")
    assert [r["usage"]["total_tokens"] for r in runs(server.base_url, agent)][-1] == last.usage.total_tokens
    assert INSTRUCTIONS not in json.dumps(stored)  # client system text is an instruction, never history


# `stall_ms` holds the first upstream request past LiveKit's 1 s timeout, before memproxy's first byte
# (its keep-alive interval is 2 s); `fail_status` makes the first attempt fail outright. `fail_times`
# with a fresh key lets the retry through.
@pytest.mark.parametrize("failure", [{"stall_ms": 1500}, {"fail_status": 500}], ids=["slow-start", "upstream-500"])
async def test_livekit_retry_after_a_failed_first_attempt_adds_the_turn_once(server, failure: dict[str, Any]) -> None:
    agent = create_agent(server.base_url)
    llm = letta_llm(server, agent, "/v1")
    errors: list[Any] = []
    llm.on("error", lambda event: errors.append(event))
    ctx = ChatContext.empty()
    ctx.add_message(role="system", content=INSTRUCTIONS)
    flaky = "Are you still there? " + sim({**failure, "fail_times": 1, "key": f"livekit-{uuid.uuid4()}",
                                          "reply": "Yes, I am here."})
    try:
        ctx.add_message(role="user", content="Hello " + sim({"reply": "Hello!"}))
        assert (await chat(llm, ctx)).text == "Hello!"
        ctx.add_message(role="assistant", content="Hello!")

        ctx.add_message(role="user", content=flaky)
        retried = await chat(llm, ctx, conn_options=APIConnectOptions(max_retry=3, retry_interval=0.2, timeout=1.0))
        assert retried.text == "Yes, I am here."
        assert errors and all(e.recoverable for e in errors), errors  # LiveKit really did retry
        ctx.add_message(role="assistant", content=retried.text)

        ctx.add_message(role="user", content="Good. " + sim({"reply": "Indeed."}))
        assert (await chat(llm, ctx)).text == "Indeed."
    finally:
        await llm.aclose()

    stored = history(server.base_url, agent)
    users = [m["content"] for m in stored if m["message_type"] == "user_message"]
    assert users.count(flaky) == 1, f"the retried turn's user message is stored {users.count(flaky)} times"
    assert [m["message_type"] for m in stored] == ["user_message", "assistant_message"] * 3, \
        [(m["message_type"], m.get("content")) for m in stored]
    assert [m["content"] for m in stored if m["message_type"] == "assistant_message"] == [
        "Hello!", "Yes, I am here.", "Indeed."]


async def test_livekit_barge_in_drops_the_reply_and_the_next_turn_does_not_repeat_the_user(server) -> None:
    """The caller talks over the agent: LiveKit closes the stream and keeps no assistant message when
    nothing was spoken, so the next chat() ends with two user messages after the last assistant one."""
    agent = create_agent(server.base_url)
    llm = letta_llm(server, agent, "/v1")
    ctx = ChatContext.empty()
    ctx.add_message(role="system", content=INSTRUCTIONS)
    interrupted = "Tell me a long story. " + sim({"reply": "Once upon a time" + " there was a story" * 8,
                                                 "token_delay_ms": 50})
    try:
        ctx.add_message(role="user", content="Hello " + sim({"reply": "Hello!"}))
        assert (await chat(llm, ctx)).text == "Hello!"
        ctx.add_message(role="assistant", content="Hello!")
        ctx.add_message(role="user", content=interrupted)
        async with llm.chat(chat_ctx=ctx, tools=[get_weather]) as stream:
            async for chunk in stream:
                if chunk.delta and chunk.delta.content:
                    break  # the caller barges in on the first words; LiveKit closes the stream
        ctx.add_message(role="user", content="Stop, what time is it? " + sim({"reply": "It is noon."}))
        assert (await chat(llm, ctx)).text == "It is noon."
    finally:
        await llm.aclose()
    users = user_texts(server.base_url, agent)
    assert users.count(interrupted) == 1, f"the interrupted user message is stored {users.count(interrupted)} times"
    assert len(users) == 3
