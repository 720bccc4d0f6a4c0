"""The OpenAI Node SDK (`openai` on npm, run with node) against a memproxy agent."""

from __future__ import annotations

import json
from typing import Any

from client_support import (ANSWER, PARIS, ROUND_TRIP_SCRIPT, check_chunks, history, runs, upstream_agent_calls,
                            weather)
from helpers import create_agent, sim_headers


def call(node: Any, server: Any, scenario: str, agent: str, messages: list[dict[str, Any]],
         headers: dict[str, str] | None = None) -> Any:
    return node.run("openai_sdk.mjs", {"scenario": scenario, "baseURL": server.base_url + "/v1", "model": agent,
                                       "messages": messages, "headers": headers or {}})


def test_node_stream_follows_the_chunk_rules_with_usage(server, node) -> None:
    agent = create_agent(server.base_url)
    out = call(node, server, "stream", agent, [{"role": "user", "content": "hello"}],
               sim_headers(reply="Hello from the agent."))
    seen = check_chunks(out["chunks"], agent, usage=True)
    assert seen["text"] == "Hello from the agent." and seen["finish"] == "stop"
    assert seen["usage"] == {k: runs(server.base_url, agent)[-1]["usage"][k]
                             for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def test_node_stream_helper_accumulates_the_final_completion(server, node) -> None:
    agent = create_agent(server.base_url)
    out = call(node, server, "stream_helper", agent, [{"role": "user", "content": "hello"}],
               sim_headers(reply="One two three."))
    final = out["final"]
    assert final["model"] == agent and final["object"] == "chat.completion"
    assert final["choices"][0]["message"]["content"] == "One two three."
    assert final["choices"][0]["finish_reason"] == "stop"
    assert "".join(out["contentDeltas"]) == "One two three."
    assert final["usage"]["total_tokens"] > 0


def test_node_non_streaming_completion(server, node) -> None:
    agent = create_agent(server.base_url)
    out = call(node, server, "nonstream", agent, [{"role": "user", "content": "hello"}], sim_headers(reply="Plain."))
    completion = out["completion"]
    assert completion["object"] == "chat.completion" and completion["model"] == agent
    assert completion["id"].startswith("chatcmpl-")
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == "Plain."
    assert choice["finish_reason"] == "stop"
    usage = completion["usage"]
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_node_client_tool_round_trip_streaming(server, node, sim_requests) -> None:
    agent = create_agent(server.base_url)
    out = call(node, server, "tool_round_trip", agent, [{"role": "user", "content": "Weather in Paris?"}],
               sim_headers(script=ROUND_TRIP_SCRIPT))
    first = check_chunks(out["first"]["chunks"], agent, usage=True)
    assert first["finish"] == "tool_calls" and first["text"] == ""
    assert [(c["name"], json.loads(c["arguments"])) for c in first["tool_calls"]] == [("get_weather", PARIS)]
    message = out["first"]["final"]["choices"][0]["message"]
    assert message["tool_calls"][0]["id"] == first["tool_calls"][0]["id"]
    second = check_chunks(out["second"]["chunks"], agent, usage=True)
    assert second["finish"] == "stop" and second["text"] == ANSWER
    # The model saw the client's tool result, answering the very call it made.
    upstream = upstream_agent_calls(sim_requests())[-1]["messages"]
    assert upstream[-1]["role"] == "tool" and upstream[-1]["tool_call_id"] == first["tool_calls"][0]["id"]
    assert json.loads(upstream[-1]["content"]) == weather("Paris")
    kinds = [m["message_type"] for m in history(server.base_url, agent)]
    assert kinds == ["user_message", "tool_call_message", "tool_return_message", "assistant_message"]


def test_node_client_tool_round_trip_non_streaming(server, node) -> None:
    agent = create_agent(server.base_url)
    out = call(node, server, "nonstream_tool_round_trip", agent, [{"role": "user", "content": "Weather in Paris?"}],
               sim_headers(script=ROUND_TRIP_SCRIPT))
    first = out["first"]["choices"][0]
    assert first["finish_reason"] == "tool_calls"
    assert first["message"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": json.dumps(PARIS,
                                                             separators=(",", ":"))}
    second = out["second"]["choices"][0]
    assert second["finish_reason"] == "stop" and second["message"]["content"] == ANSWER
    assert out["second"]["usage"]["total_tokens"] > 0


def test_node_sdk_tool_runner_executes_the_tool_and_gets_the_answer(server, node) -> None:
    agent = create_agent(server.base_url)
    out = call(node, server, "run_tools", agent, [{"role": "user", "content": "Weather in Paris?"}],
               sim_headers(script=ROUND_TRIP_SCRIPT))
    assert out["errors"] == []
    assert out["calls"] == [PARIS]
    assert out["content"] == ANSWER
    assert out["finishReasons"] == ["tool_calls", "stop"]
    assert all(u and u["total_tokens"] > 0 for u in out["usages"]), out["usages"]
    total = out["totalUsage"]
    assert total["total_tokens"] == sum(u["total_tokens"] for u in out["usages"])
    assert [m["message_type"] for m in history(server.base_url, agent)].count("user_message") == 1
