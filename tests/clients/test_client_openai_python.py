"""The OpenAI Python SDK against a memproxy agent: the client tool round trip, streamed and not."""

from __future__ import annotations

import json
import uuid
from typing import Any

import openai

from client_support import (ANSWER, PARIS, ROUND_TRIP_SCRIPT, WEATHER_TOOL, check_chunks, history, runs,
                            upstream_agent_calls, weather)
from helpers import create_agent, sdk, sim_headers

QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


def dumped(chunks: list[Any]) -> list[dict[str, Any]]:
    # exclude_unset keeps exactly the keys that were on the wire (explicit nulls included).
    return [c.model_dump(exclude_unset=True) for c in chunks]


def test_python_sdk_streamed_client_tool_round_trip_with_usage(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    headers = sim_headers(script=ROUND_TRIP_SCRIPT)
    first = check_chunks(dumped(list(client.chat.completions.create(
        model=agent, messages=[QUESTION], tools=[WEATHER_TOOL], stream=True, stream_options={"include_usage": True},
        extra_headers=headers))), agent, usage=True)
    assert first["finish"] == "tool_calls" and first["text"] == ""
    [tool_call] = first["tool_calls"]
    assert tool_call["name"] == "get_weather" and json.loads(tool_call["arguments"]) == PARIS
    # The client answers with its whole transcript: user, the assistant's tool call, the tool result.
    transcript = [QUESTION,
                  {"role": "assistant", "content": None,
                   "tool_calls": [{"id": tool_call["id"], "type": "function",
                                   "function": {"name": "get_weather", "arguments": tool_call["arguments"]}}]},
                  {"role": "tool", "tool_call_id": tool_call["id"], "content": json.dumps(weather("Paris"))}]
    second = check_chunks(dumped(list(client.chat.completions.create(
        model=agent, messages=transcript, tools=[WEATHER_TOOL], stream=True, stream_options={"include_usage": True},
        extra_headers=headers))), agent, usage=True)
    assert second["finish"] == "stop" and second["text"] == ANSWER
    agent_runs = runs(server.base_url, agent)
    # Runs speak Letta's StopReasonType: a pause for client tools is `requires_approval`.
    assert [r["stop_reason"] for r in agent_runs] == ["requires_approval", "end_turn"]
    for seen, run in zip((first, second), agent_runs):
        assert seen["usage"] == {k: run["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    calls = upstream_agent_calls(sim_requests())
    assert len(calls) == 2
    # Upstream, the second call continues the first: the same call id, then the client's result.
    assert calls[1]["messages"][-2]["tool_calls"][0]["id"] == tool_call["id"]
    assert calls[1]["messages"][-1] == {"role": "tool", "tool_call_id": tool_call["id"],
                                        "content": json.dumps(weather("Paris"))}
    assert [m["role"] for m in calls[1]["messages"]].count("user") == 1
    stored = history(server.base_url, agent)
    assert [m["message_type"] for m in stored] == ["user_message", "tool_call_message", "tool_return_message",
                                                   "assistant_message"]
    assert stored[2]["tool_call_id"] == tool_call["id"] and json.loads(stored[2]["tool_return"]) == weather("Paris")
    assert stored[3]["content"] == ANSWER


def test_python_sdk_stream_helper_round_trip(server) -> None:
    """`client.chat.completions.stream` accumulates the deltas itself and rejects malformed ones."""
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    headers = sim_headers(script=ROUND_TRIP_SCRIPT)
    with client.chat.completions.stream(model=agent, messages=[QUESTION], tools=[WEATHER_TOOL],
                                        stream_options={"include_usage": True}, extra_headers=headers) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and final.usage is not None and final.usage.total_tokens > 0
    message = choice.message
    assert message.tool_calls[0].function.name == "get_weather"
    transcript: list[Any] = [QUESTION, message.model_dump(exclude_none=True)]
    for call in message.tool_calls:
        transcript.append({"role": "tool", "tool_call_id": call.id,
                           "content": json.dumps(weather(**json.loads(call.function.arguments)))})
    with client.chat.completions.stream(model=agent, messages=transcript, tools=[WEATHER_TOOL],
                                        stream_options={"include_usage": True}, extra_headers=headers) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "stop" and final.choices[0].message.content == ANSWER
    assert final.usage is not None and final.usage.total_tokens > 0


def test_python_sdk_non_streamed_client_tool_round_trip(server) -> None:
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    headers = sim_headers(script=ROUND_TRIP_SCRIPT)
    first = client.chat.completions.create(model=agent, messages=[QUESTION], tools=[WEATHER_TOOL],
                                           extra_headers=headers)
    assert first.choices[0].finish_reason == "tool_calls"
    message = first.choices[0].message
    assert message.content is None and message.tool_calls[0].function.name == "get_weather"
    transcript = [QUESTION, message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "sunny, 21C"}]
    second = client.chat.completions.create(model=agent, messages=transcript, tools=[WEATHER_TOOL],
                                            extra_headers=headers)
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content == ANSWER
    assert second.usage is not None and second.usage.total_tokens > 0
    assert [m["message_type"] for m in history(server.base_url, agent)].count("user_message") == 1


def test_python_sdk_retry_of_the_tool_result_request_stores_it_once(server, sim_requests) -> None:
    """The SDK retries a 5xx by itself; a retried tool-result request must not store the result twice."""
    agent = create_agent(server.base_url)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=2)
    key = f"tool-retry-{uuid.uuid4()}"
    first = client.chat.completions.create(model=agent, messages=[QUESTION], tools=[WEATHER_TOOL],
                                           extra_headers=sim_headers(script=ROUND_TRIP_SCRIPT))
    message = first.choices[0].message
    transcript = [QUESTION, message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": json.dumps(weather("Paris"))}]
    # The upstream fails once on the continuation; the SDK's own retry gets through.
    flaky = sim_headers(script=ROUND_TRIP_SCRIPT, fail_status=500, fail_times=1, key=key)
    second = client.chat.completions.create(model=agent, messages=transcript, tools=[WEATHER_TOOL],
                                            extra_headers=flaky)
    assert second.choices[0].message.content == ANSWER
    kinds = [m["message_type"] for m in history(server.base_url, agent)]
    assert kinds == ["user_message", "tool_call_message", "tool_return_message", "assistant_message"], kinds
    calls = upstream_agent_calls(sim_requests())
    assert len(calls) == 3  # the tool call, the failed continuation, the retried one
    assert [m["role"] for m in calls[-1]["messages"][1:]] == ["user", "assistant", "tool"]
