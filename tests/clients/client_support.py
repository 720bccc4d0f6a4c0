"""Helpers of the real-client tests (importable as `client_support`: tests/clients is on sys.path)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False},
    },
}
PARIS = {"city": "Paris"}
ANSWER = "It is sunny and 21C in Paris."
# Step 0 (no assistant message after the last user one upstream): call the client tool; step 1: answer.
ROUND_TRIP_SCRIPT = [{"tool_calls": [{"name": "get_weather", "arguments": PARIS}]}, {"reply": ANSWER}]


def weather(city: str) -> dict[str, Any]:
    """What every client's get_weather returns (the Node scripts return the same)."""
    return {"city": city, "forecast": "sunny", "temperature_c": 21}


def history(base_url: str, agent: str) -> list[dict[str, Any]]:
    """The agent's whole message history as LettaMessages, oldest first."""
    response = httpx.get(f"{base_url}/v1/agents/{agent}/messages", params={"limit": 1000, "order": "asc"},
                         timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def user_texts(base_url: str, agent: str) -> list[str]:
    return [m["content"] for m in history(base_url, agent) if m["message_type"] == "user_message"]


def runs(base_url: str, agent: str) -> list[dict[str, Any]]:
    """The agent's runs, oldest first."""
    response = httpx.get(f"{base_url}/v1/runs/", params={"agent_id": agent, "limit": 1000}, timeout=10)
    assert response.status_code == 200, response.text
    return list(reversed(response.json()))


def wait_for(predicate: Any, timeout: float = 5.0) -> Any:
    """Poll until `predicate()` is truthy (for state the server persists after the response ends)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def upstream_agent_calls(requests: list[dict[str, Any]], agent_system: str = "You are a test agent.") -> list[Any]:
    """The simulator's requests that came from an agent turn (their system prompt is the agent's)."""
    out = []
    for body in requests:
        messages = body.get("messages") or []
        if messages and messages[0].get("role") == "system" and str(messages[0].get("content")).startswith(
                agent_system):
            out.append(body)
    return out


def tool_result_text(result: Any) -> str:
    return json.dumps(result, separators=(",", ":"))


def check_chunks(chunks: list[dict[str, Any]], model: str, *, usage: bool) -> dict[str, Any]:
    """Assert the streaming rules of DESIGN.md on parsed chunks (no [DONE]); returns what they carried."""
    assert chunks, "no chunks"
    frames = {(c["id"], c["created"], c["object"], c["model"]) for c in chunks}
    assert len(frames) == 1, f"id/created/object/model differ between chunks: {frames}"
    first = chunks[0]
    assert first["id"].startswith("chatcmpl-") and first["model"] == model
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}, first
    finishes = [i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0].get("finish_reason")]
    assert len(finishes) == 1, f"finish_reason set on {len(finishes)} chunks"
    tail = chunks[finishes[0] + 1:]
    if usage:
        assert len(tail) == 1 and tail[0]["choices"] == [], tail
        totals = tail[0]["usage"]
        assert totals["prompt_tokens"] > 0 and totals["completion_tokens"] > 0
        assert totals["total_tokens"] == totals["prompt_tokens"] + totals["completion_tokens"]
        assert all(c.get("usage") is None for c in chunks[:-1])
    else:
        assert tail == [] and all(c.get("usage") is None for c in chunks)
    calls: dict[int, dict[str, Any]] = {}
    text = []
    for chunk in chunks[1:finishes[0] + 1]:
        delta = chunk["choices"][0]["delta"]
        delta = {k: v for k, v in delta.items() if v is not None}  # SDKs may fill absent keys with null
        if chunk is chunks[finishes[0]]:
            assert delta in ({}, {"content": ""}), f"the finish chunk carries a delta: {delta}"
            continue
        assert set(delta) in ({"content"}, {"tool_calls"}), f"a delta with more than one kind: {delta}"
        text.append(delta.get("content") or "")
        for call in delta.get("tool_calls") or ():
            index = call["index"]
            fn = call.get("function") or {}
            if index not in calls:
                assert isinstance(call.get("id"), str) and call["id"], call
                assert call.get("type") == "function" and fn.get("name") and fn.get("arguments") == "", call
                calls[index] = {"id": call["id"], "name": fn["name"], "arguments": ""}
            else:
                assert set(call) == {"index", "function"} and set(fn) == {"arguments"}, call
                calls[index]["arguments"] += fn["arguments"]
    assert sorted(calls) == list(range(len(calls)))
    return {"text": "".join(text), "finish": chunks[finishes[0]]["choices"][0]["finish_reason"],
            "tool_calls": [calls[i] for i in sorted(calls)], "usage": tail[0]["usage"] if usage else None}


def require(module: str, package: str) -> Any:
    """Import a client library (the `test` extra in pyproject.toml): skipped when absent, a failure under CI."""
    import importlib
    import os

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        reason = f"{package} is not installed (pip install -e '.[test]'): {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (required under CI=true)", pytrace=False)
        pytest.skip(reason, allow_module_level=True)
