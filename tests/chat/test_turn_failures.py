"""Every turn ends: a turn that raises answers with an error, fails its run, keeps nothing, and the next works."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from helpers import agent_calls, create_agent, raw_events, sim_headers
from tools.registry import ServerTool, ToolContext


async def _explode(ctx: ToolContext, args: dict[str, Any]) -> str:
    raise RuntimeError("a bug in a server tool")


@pytest.fixture
def exploding(server) -> str:
    """An agent with a server tool whose code raises."""
    server.rt.registry.add(ServerTool("explode", "Always raises.", {"type": "object", "properties": {}}, _explode))
    return create_agent(server.base_url, tools=["explode"], include_base_tools=True)


SCRIPT = [{"reply": "Let me check. ", "tool_calls": [{"name": "explode", "arguments": {}}]}, {"reply": "never"}]


def _history(base_url: str, agent: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()


def _runs(base_url: str, agent: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base_url}/v1/runs/", params={"agent_id": agent}).json()


def test_stream_gets_an_error_event_and_done_when_a_server_tool_raises(server, exploding, sim_requests) -> None:
    body = {"model": exploding, "stream": True, "messages": [{"role": "user", "content": "first try"}]}
    with httpx.Client(base_url=server.base_url, timeout=20) as http:
        response = http.post("/v1/chat/completions", json=body, headers=sim_headers(script=SCRIPT))
    assert response.status_code == 200
    events, _ = raw_events(response)
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert error["code"] == "internal_error" and error["type"] and "RuntimeError" not in error["message"]
    assert not any(e != "[DONE]" and "choices" in e and e["choices"] and e["choices"][0].get("finish_reason")
                   for e in events)
    # Nothing of the failed turn is kept; its run says it failed.
    assert _history(server.base_url, exploding) == []
    runs = _runs(server.base_url, exploding)
    assert [r["status"] for r in runs] == ["failed"] and runs[0]["stop_reason"] == "error"
    assert "RuntimeError" in runs[0]["error"]

    # The next turn works, and neither the cache nor the store remembers the failed one.
    ok = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=20,
                    json={"model": exploding, "messages": [{"role": "user", "content": "second try"}]})
    assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] == "stop"
    sent = [m.get("content") for m in agent_calls(sim_requests)[-1]["messages"]]
    assert "second try" in sent and "first try" not in sent
    assert [m["message_type"] for m in _history(server.base_url, exploding)] == ["user_message", "assistant_message"]


def test_non_stream_gets_a_500_in_openai_shape_when_a_server_tool_raises(server, exploding) -> None:
    with httpx.Client(base_url=server.base_url, timeout=20) as http:
        response = http.post("/v1/chat/completions", headers=sim_headers(script=SCRIPT),
                             json={"model": exploding, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        # The same keep-alive connection still serves the next request.
        again = http.post("/v1/chat/completions", json={"model": exploding,
                                                        "messages": [{"role": "user", "content": "again"}]})
    assert again.status_code == 200
    assert sorted(r["status"] for r in _runs(server.base_url, exploding)) == ["completed", "failed"]


def test_a_retry_of_a_failed_turn_runs_again(server, exploding) -> None:
    headers = {**sim_headers(script=SCRIPT), "Idempotency-Key": "retry-after-crash"}
    body = {"model": exploding, "messages": [{"role": "user", "content": "hello"}]}
    first = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, headers=headers, timeout=20)
    assert first.status_code == 500
    second = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=20,
                        headers={"Idempotency-Key": "retry-after-crash"})
    assert second.status_code == 200, second.text
    assert len(_history(server.base_url, exploding)) == 2
