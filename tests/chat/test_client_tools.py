"""Client tools beside server tools: mixed steps, abandoned calls, name clashes, the legacy `functions` dialect."""

from __future__ import annotations

import json
from typing import Any

import httpx

from helpers import agent_calls, create_agent, raw_events, sdk, sim_headers

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
ASK = {"role": "user", "content": "weather in Oslo? and remember I asked"}


def post(base_url: str, body: dict[str, Any], **sim: Any) -> httpx.Response:
    return httpx.post(base_url + "/v1/chat/completions", json=body, headers=sim_headers(**sim) if sim else {},
                      timeout=30)


def test_mixed_step_runs_the_server_tool_and_hands_the_client_tool_over(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    script = [{"tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "asks about Oslo"}},
                              {"name": "get_weather", "arguments": {"city": "Oslo"}}]},
              {"reply": "It is cold in Oslo."}]
    first = post(server.base_url, {"model": agent, "stream": True, "messages": [ASK], "tools": [WEATHER]},
                 script=script)
    events, _ = raw_events(first)
    chunks = events[:-1]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
             if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    # Only the client's tool reaches the client, numbered from 0, with the OpenAI delta shape.
    assert calls[0]["index"] == 0 and calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert calls[0]["type"] == "function" and calls[0]["id"]
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Oslo"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]] \
        == ["tool_calls"]
    block = httpx.get(f"{server.base_url}/v1/agents/{agent}/core-memory/blocks/human").json()
    assert block["value"].endswith("asks about Oslo")  # the server tool ran in the same step

    transcript = [ASK, {"role": "assistant", "content": None, "tool_calls": [
                      {"id": calls[0]["id"], "type": "function",
                       "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
                  {"role": "tool", "tool_call_id": calls[0]["id"], "content": '{"celsius": -4}'}]
    second = post(server.base_url, {"model": agent, "messages": transcript, "tools": [WEATHER]}, script=script)
    assert second.json()["choices"][0]["message"]["content"] == "It is cold in Oslo."
    sent = agent_calls(sim_requests)[-1]["messages"]
    assert [m["role"] for m in sent[-4:]] == ["user", "assistant", "tool", "tool"]
    assert {m["tool_call_id"] for m in sent[-2:]} == {c["id"] for c in sent[-3]["tool_calls"]}
    assert sent[-1]["content"] == '{"celsius": -4}'


def test_a_new_user_message_abandons_the_pending_call(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    call = {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}
    post(server.base_url, {"model": agent, "messages": [ASK], "tools": [WEATHER]}, script=[call])
    post(server.base_url, {"model": agent, "messages": [{"role": "user", "content": "never mind"}]})
    sent = agent_calls(sim_requests)[-1]["messages"]
    assert [m["role"] for m in sent[-4:]] == ["user", "assistant", "tool", "user"]
    assert "abandoned" in sent[-2]["content"] and sent[-2]["tool_call_id"] == sent[-3]["tool_calls"][0]["id"]


def test_a_client_tool_named_like_a_server_tool_is_refused(server) -> None:
    agent = create_agent(server.base_url)
    clash = {"type": "function", "function": {"name": "memory_insert", "parameters": {"type": "object"}}}
    response = post(server.base_url, {"model": agent, "messages": [ASK], "tools": [clash]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "tool_name_conflict"
    stored = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages").json()
    assert stored == []  # nothing half-written


def test_legacy_functions_get_legacy_function_calls(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    script = [{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Lima"}}]}, {"reply": "Warm in Lima."}]
    body = {"model": agent, "messages": [ASK], "functions": [WEATHER["function"]], "function_call": "auto"}
    legacy = post(server.base_url, body, script=script).json()
    choice = legacy["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"]["name"] == "get_weather"
    assert json.loads(choice["message"]["function_call"]["arguments"]) == {"city": "Lima"}
    assert "tool_calls" not in choice["message"]
    assert agent_calls(sim_requests)[-1]["tools"][-1]["function"]["name"] == "get_weather"
    # Streaming speaks the same dialect.
    streamed, _ = raw_events(post(server.base_url, {**body, "stream": True,
                                                    "messages": [{"role": "user", "content": "and Quito?"}]},
                                  script=[{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Quito"}}]}]))
    deltas = [e["choices"][0]["delta"] for e in streamed[:-1] if e["choices"]]
    assert deltas[1]["function_call"] == {"name": "get_weather", "arguments": ""}
    assert streamed[-2]["choices"][0]["finish_reason"] == "function_call"
    # The result comes back as a `function` message with only the name to match it by.
    transcript = [{"role": "user", "content": "and Quito?"},
                  {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
                  {"role": "function", "name": "get_weather", "content": '{"celsius": 14}'}]
    answered = post(server.base_url, {**body, "messages": transcript}, script=script).json()
    assert answered["choices"][0]["message"]["content"] == "Warm in Lima."
    assert agent_calls(sim_requests)[-1]["messages"][-1] == {
        "role": "tool", "tool_call_id": agent_calls(sim_requests)[-1]["messages"][-2]["tool_calls"][0]["id"],
        "content": '{"celsius": 14}'}


def test_sdk_parallel_client_calls_round_trip(server) -> None:
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    script = [{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}},
                              {"name": "get_weather", "arguments": {"city": "Rome"}}]},
              {"reply": "Oslo is cold, Rome is warm."}]
    first = client.chat.completions.create(model=agent, messages=[ASK], tools=[WEATHER],
                                           extra_headers=sim_headers(script=script))
    calls = first.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Oslo", "Rome"]
    messages = [ASK, first.choices[0].message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": c.id, "content": "{}"} for c in calls]
    final = client.chat.completions.create(model=agent, messages=messages, tools=[WEATHER],
                                           extra_headers=sim_headers(script=script))
    assert final.choices[0].message.content == "Oslo is cold, Rome is warm."
