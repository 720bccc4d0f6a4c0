"""The Vercel AI SDK (`ai` + `@ai-sdk/openai-compatible`, run with node) against a memproxy agent."""

from __future__ import annotations

from typing import Any

import pytest

from client_support import ANSWER, PARIS, ROUND_TRIP_SCRIPT, history, runs, upstream_agent_calls, weather
from helpers import create_agent, sim_headers


def call(node: Any, server: Any, scenario: str, agent: str, **extra: Any) -> Any:
    payload = {"scenario": scenario, "baseURL": server.base_url + "/v1", "model": agent,
               "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
               "headers": sim_headers(script=ROUND_TRIP_SCRIPT)}
    payload.update(extra)
    return node.run("ai_sdk.mjs", payload)


def check_usage(usage: dict[str, Any], run: dict[str, Any]) -> None:
    """The SDK's view of one step's usage is what memproxy reported for that turn."""
    assert usage["inputTokens"] == run["usage"]["prompt_tokens"] > 0
    assert usage["outputTokens"] == run["usage"]["completion_tokens"] > 0
    assert usage["totalTokens"] == run["usage"]["total_tokens"]


@pytest.mark.parametrize("scenario", ["generate", "stream"])
def test_ai_sdk_executes_the_client_tool_and_the_agent_answers_with_it(server, node, sim_requests,
                                                                       scenario: str) -> None:
    agent = create_agent(server.base_url)
    out = call(node, server, scenario, agent)
    assert out.get("errors", []) == [], out["errors"]
    assert out["calls"] == [PARIS]  # the SDK ran `execute` once, with the model's arguments
    assert out["text"] == ANSWER
    assert out["finishReason"] == "stop"
    steps = out["steps"]
    assert [s["finishReason"] for s in steps] == ["tool-calls", "stop"]
    assert [(c["toolName"], c["input"]) for c in steps[0]["toolCalls"]] == [("get_weather", PARIS)]
    assert steps[0]["toolResults"][0]["output"] == weather("Paris")
    assert all(s["modelId"] == agent and s["responseId"].startswith("chatcmpl-") for s in steps)
    assert steps[0]["responseId"] != steps[1]["responseId"]
    assert all(s["warnings"] == [] for s in steps), [s["warnings"] for s in steps]
    # Usage: each step is one memproxy turn; the total is their sum.
    agent_runs = runs(server.base_url, agent)
    assert len(agent_runs) == 2
    for step, run in zip(steps, agent_runs):
        check_usage(step["usage"], run)
    check_usage(out["usage"], agent_runs[1])
    total = out["totalUsage"]
    assert total["inputTokens"] == sum(r["usage"]["prompt_tokens"] for r in agent_runs)
    assert total["outputTokens"] == sum(r["usage"]["completion_tokens"] for r in agent_runs)
    # The model answered after reading the SDK's tool result.
    upstream = upstream_agent_calls(sim_requests())[-1]["messages"]
    assert upstream[-1]["role"] == "tool" and upstream[-1]["tool_call_id"] == steps[0]["toolCalls"][0]["toolCallId"]
    assert "sunny" in upstream[-1]["content"]
    kinds = [m["message_type"] for m in history(server.base_url, agent)]
    assert kinds == ["user_message", "tool_call_message", "tool_return_message", "assistant_message"]
    if scenario == "stream":
        assert "error" not in out["parts"] and out["parts"][-1] == "finish"
        assert out["parts"].count("finish-step") == 2
        assert out["finishEvent"]["finishReason"] == "stop" and out["finishEvent"]["text"] == ANSWER


def test_ai_sdk_stream_text_without_tools(server, node) -> None:
    agent = create_agent(server.base_url)
    out = call(node, server, "stream", agent, tools=False, headers=sim_headers(reply="Just text, streamed."))
    assert out["errors"] == [] and "error" not in out["parts"]
    assert out["text"] == "Just text, streamed." and out["finishReason"] == "stop"
    check_usage(out["usage"], runs(server.base_url, agent)[-1])
