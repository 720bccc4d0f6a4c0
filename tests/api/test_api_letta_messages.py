"""Letta's messages API over raw HTTP: refusals by name, errors before and during a stream, retries, paging."""

from __future__ import annotations

import httpx
import pytest

from helpers import create_agent, raw_events, sim_headers


def _send(base: str, agent: str, body: dict, path: str = "", **sim: object) -> httpx.Response:
    return httpx.post(f"{base}/v1/agents/{agent}/messages{path}", json=body, timeout=30,
                      headers=sim_headers(**sim) if sim else None)


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "user", "content": "x"}], "override_model": "gpt-4o"}, "override_model"),
    ({"messages": [{"role": "user", "content": "x"}], "background": True}, "background"),
    ({"messages": [{"role": "user", "content": "x"}], "no_such_field": 1}, "no_such_field"),
    ({"messages": [{"role": "user", "content": "x", "mood": "happy"}]}, "messages[0].mood"),
    ({"messages": [{"type": "approval", "approve": True}]}, "messages[0].approvals"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "x"}], "include_return_message_types": ["nope"]},
     "include_return_message_types[0]"),
    ({"messages": [{"role": "user", "content": "x"}], "input": "y"}, "input"),
])
def test_unsupported_or_malformed_fields_are_refused_by_name(server, body, param) -> None:
    agent = create_agent(server.base_url)
    for path in ("", "/stream", "/async"):
        response = _send(server.base_url, agent, body, path)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


def test_fields_at_their_off_values_are_accepted(server) -> None:
    agent = create_agent(server.base_url)
    response = _send(server.base_url, agent, {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}], "otid": "o-1"}],
        "background": False, "return_logprobs": False, "client_tools": None, "use_assistant_message": True,
        "assistant_message_tool_name": "send_message"}, reply="Hello.")
    assert response.status_code == 200, response.text
    assert [m["content"] for m in response.json()["messages"]] == ["Hello."]


def test_an_upstream_refusal_is_a_real_status_before_the_stream_starts(server) -> None:
    agent = create_agent(server.base_url)
    body = {"messages": [{"role": "user", "content": "x"}]}
    for path in ("", "/stream"):
        response = _send(server.base_url, agent, body, path, fail_status=429)
        assert response.status_code == 429 and response.json()["error"]["code"], response.text


def test_a_failure_mid_stream_ends_with_an_error_message_and_done(server) -> None:
    agent = create_agent(server.base_url)
    response = _send(server.base_url, agent, {"messages": [{"role": "user", "content": "x"}], "stream_tokens": True},
                     "/stream", fail_after_chunks=4, reply_tokens=20)
    assert response.status_code == 200
    events, _ = raw_events(response)
    assert events[-1] == "[DONE]" and events[-2]["message_type"] == "error_message"
    assert events[-2]["run_id"].startswith("run-") and events[0]["message_type"] == "assistant_message"
    run = httpx.get(f"{server.base_url}/v1/runs/{events[-2]['run_id']}").json()
    assert run["status"] == "failed" and run["stop_reason"] == "error"


def test_a_retry_with_the_same_key_replays_the_turn_instead_of_running_it_again(server) -> None:
    agent = create_agent(server.base_url)
    body = {"messages": [{"role": "user", "content": "once"}]}
    headers = {"Idempotency-Key": "letta-retry-1", **sim_headers(reply="Only once.")}
    first, second = (httpx.post(f"{server.base_url}/v1/agents/{agent}/messages", json=body, headers=headers,
                                timeout=30) for _ in range(2))
    assert first.json()["messages"][0]["content"] == second.json()["messages"][0]["content"] == "Only once."
    assert first.headers["x-memproxy-run-id"] == second.headers["x-memproxy-run-id"]
    assert len(httpx.get(f"{server.base_url}/v1/runs", params={"agent_id": agent}).json()) == 1
    # The same key on the OpenAI route is another surface's turn: it runs, not replays into the wrong shape.
    chat = httpx.post(f"{server.base_url}/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": agent, "messages": [{"role": "user", "content": "once"}]})
    assert chat.json()["object"] == "chat.completion"


def test_agent_fields_memproxy_cannot_honour_are_refused_by_name(server) -> None:
    base = server.base_url
    for field, value in (("enable_sleeptime", True), ("agent_type", "memgpt_agent"), ("identity_ids", ["identity-1"]),
                         ("made_up", 1)):
        response = httpx.post(base + "/v1/agents/", json={"name": "x", field: value}, timeout=10)
        assert response.status_code == 400 and response.json()["error"]["param"] == field, response.text
    agent = create_agent(base, enable_sleeptime=False, tool_rules=[], agent_type="letta_v1_agent")
    response = httpx.patch(f"{base}/v1/agents/{agent}", json={"enable_sleeptime": True}, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["param"] == "enable_sleeptime"
    response = httpx.patch(f"{base}/v1/agents/{agent}", json={"timezone": "Mars/Olympus"}, timeout=10)
    assert response.status_code == 422 and response.json()["error"]["param"] == "timezone"
    response = httpx.post(base + "/v1/agents/", timeout=10,
                          json={"initial_message_sequence": [{"role": "system", "content": "x"}]})
    assert response.status_code == 422


def test_agent_blocks_page_both_ways_in_either_order(server) -> None:
    agent = create_agent(server.base_url)
    url = f"{server.base_url}/v1/agents/{agent}/core-memory/blocks"
    everything = httpx.get(url).json()
    ids = [b["id"] for b in everything]
    assert [b["label"] for b in everything] == ["human", "persona", "policy"]
    assert [b["id"] for b in httpx.get(url, params={"after": ids[0], "limit": 1}).json()] == [ids[1]]
    assert [b["id"] for b in httpx.get(url, params={"before": ids[2]}).json()] == ids[:2]
    assert [b["id"] for b in httpx.get(url, params={"before": ids[2], "limit": 1}).json()] == [ids[1]]
    assert [b["id"] for b in httpx.get(url, params={"order": "desc", "after": ids[2]}).json()] == ids[1::-1]
    assert httpx.get(url, params={"after": ids[2]}).json() == []
