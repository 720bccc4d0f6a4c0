"""Human approval of server tool calls, with the OpenAI Python SDK and Letta's messages API."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from helpers import agent_calls, create_agent, sdk, sim_headers

INSERT = {"name": "memory_insert", "arguments": {"label": "human", "new_str": "Likes green tea"}}
SCRIPT = [{"tool_calls": [INSERT]}, "Saved."]


def _approving_agent(base: str) -> str:
    agent = create_agent(base)
    response = httpx.patch(f"{base}/v1/agents/{agent}/tools/approval/memory_insert", json={"requires_approval": True})
    assert response.status_code == 200, response.text
    return agent


def _human(base: str, agent: str) -> str:
    return httpx.get(f"{base}/v1/agents/{agent}/core-memory/blocks/human", timeout=10).json()["value"]


def _messages(call: Any, decision: dict[str, Any]) -> list[dict[str, Any]]:
    """The transcript an OpenAI client sends back: its question, the call it was shown, and its answer."""
    return [{"role": "user", "content": "remember I like green tea"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(decision)}]


def _ask(base: str, agent: str) -> Any:
    out = sdk(base).chat.completions.create(model=agent, extra_headers=sim_headers(script=SCRIPT),
                                            messages=[{"role": "user", "content": "remember I like green tea"}])
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.function.name == "memory_insert" and json.loads(call.function.arguments) == INSERT["arguments"]
    assert _human(base, agent) == "Name: Ada"  # not run yet
    return call.model_dump(exclude_none=True)


def test_an_approved_call_runs_and_the_turn_goes_on(server, sim_requests) -> None:
    base = server.base_url
    agent = _approving_agent(base)
    call = _ask(base, agent)
    runs = httpx.get(f"{base}/v1/runs/", params={"agent_id": agent}).json()
    assert [r["stop_reason"] for r in runs] == ["requires_approval"]
    out = sdk(base).chat.completions.create(model=agent, messages=_messages(call, {"approve": True}),
                                            extra_headers=sim_headers(script=SCRIPT))
    assert out.choices[0].finish_reason == "stop" and out.choices[0].message.content == "Saved."
    assert "Likes green tea" in _human(base, agent)
    last = agent_calls(sim_requests)[-1]["messages"]
    assert last[-2]["tool_calls"][0]["id"] == call["id"]
    assert last[-1]["role"] == "tool" and last[-1]["tool_call_id"] == call["id"] and "Error" not in last[-1]["content"]
    history = httpx.get(f"{base}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
    returns = [m for m in history if m["message_type"] == "tool_return_message"]
    assert [(r["tool_call_id"], r["status"]) for r in returns] == [(call["id"], "success")]


def test_a_denied_call_is_not_run_and_the_model_reads_the_reason_streamed(server, sim_requests) -> None:
    base = server.base_url
    agent = _approving_agent(base)
    client = sdk(base)
    chunks = list(client.chat.completions.create(model=agent, stream=True, extra_headers=sim_headers(script=SCRIPT),
                                                 messages=[{"role": "user", "content": "remember I like green tea"}]))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"] and deltas[0].id and deltas[0].function.name == "memory_insert"
    call = {"id": deltas[0].id, "type": "function",
            "function": {"name": "memory_insert", "arguments": "".join(d.function.arguments or "" for d in deltas)}}
    stream = client.chat.completions.create(model=agent, stream=True, extra_headers=sim_headers(script=SCRIPT),
                                            messages=_messages(call, {"approve": False, "reason": "not now"}))
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Saved." and _human(base, agent) == "Name: Ada"
    result = agent_calls(sim_requests)[-1]["messages"][-1]
    assert result["content"] == "Error: the user denied this call to `memory_insert`: not now. It was not run."


def test_a_new_message_while_a_call_waits_denies_it(server, sim_requests) -> None:
    base = server.base_url
    agent = _approving_agent(base)
    call = _ask(base, agent)
    out = sdk(base).chat.completions.create(model=agent, messages=[{"role": "user", "content": "never mind"}],
                                            extra_headers=sim_headers(reply="Fine."))
    assert out.choices[0].message.content == "Fine." and _human(base, agent) == "Name: Ada"
    sent = agent_calls(sim_requests)[-1]["messages"]
    assert sent[-2]["tool_call_id"] == call["id"] and "denied" in sent[-2]["content"]
    assert sent[-1] == {"role": "user", "content": "never mind"}


def test_bad_approvals_are_400_and_change_nothing(server) -> None:
    base = server.base_url
    agent = _approving_agent(base)
    call = _ask(base, agent)
    before = httpx.get(f"{base}/v1/agents/{agent}/messages").json()
    client = httpx.Client(base_url=base, timeout=30)
    for messages, code in (
            (_messages({**call, "id": "call_unknown"}, {"approve": True}), "unknown_tool_call"),
            ([*_messages(call, {"approve": True})[:2], {"role": "tool", "tool_call_id": call["id"], "content": "ok"}],
             "invalid_approval")):
        for stream in (False, True):
            response = client.post("/v1/chat/completions", json={"model": agent, "messages": messages, "stream": stream})
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == code and response.json()["error"]["param"] == "messages"
    assert httpx.get(f"{base}/v1/agents/{agent}/messages").json() == before
    # The call still waits, and can be approved.
    out = sdk(base).chat.completions.create(model=agent, messages=_messages(call, {"approve": True}),
                                            extra_headers=sim_headers(script=SCRIPT))
    assert out.choices[0].message.content == "Saved." and "Likes green tea" in _human(base, agent)


def test_the_upstream_failing_after_an_approval_keeps_the_result_and_a_retry_goes_on(server) -> None:
    base = server.base_url
    agent = _approving_agent(base)
    call = _ask(base, agent)
    client = sdk(base)
    with pytest.raises(Exception):
        client.chat.completions.create(model=agent, messages=_messages(call, {"approve": True}),
                                       extra_headers=sim_headers(fail_status=500))
    assert _human(base, agent).count("Likes green tea") == 1  # the approved call ran, once
    out = client.chat.completions.create(model=agent, messages=_messages(call, {"approve": True}),
                                         extra_headers={**sim_headers(script=SCRIPT), "Idempotency-Key": str(uuid.uuid4())})
    assert out.choices[0].message.content == "Saved." and _human(base, agent).count("Likes green tea") == 1


def test_a_pending_call_survives_a_restart(make_server, tmp_path) -> None:
    data_dir = str(tmp_path / "data")
    first = make_server(data_dir=data_dir)
    agent = _approving_agent(first.base_url)
    call = _ask(first.base_url, agent)
    first.stop()
    second = make_server(data_dir=data_dir)
    out = sdk(second.base_url).chat.completions.create(model=agent, messages=_messages(call, {"approve": True}),
                                                       extra_headers=sim_headers(script=SCRIPT))
    assert out.choices[0].message.content == "Saved." and "Likes green tea" in _human(second.base_url, agent)


def test_letta_messages_api_shows_the_request_and_takes_the_approval(server) -> None:
    base = server.base_url
    agent = _approving_agent(base)
    url = f"{base}/v1/agents/{agent}/messages"
    first = httpx.post(url, headers=sim_headers(script=SCRIPT), timeout=30,
                       json={"messages": [{"role": "user", "content": "remember I like green tea"}]}).json()
    request = [m for m in first["messages"] if m["message_type"] == "approval_request_message"]
    assert len(request) == 1 and request[0]["tool_call"]["name"] == "memory_insert"
    assert first["stop_reason"]["stop_reason"] == "requires_approval"
    call_id = request[0]["tool_call"]["tool_call_id"]
    second = httpx.post(url, headers=sim_headers(script=SCRIPT), timeout=30, json={"messages": [
        {"type": "approval", "approvals": [{"type": "approval", "tool_call_id": call_id, "approve": True}]}]})
    assert second.status_code == 200, second.text
    kinds = [m["message_type"] for m in second.json()["messages"]]
    assert kinds == ["tool_return_message", "assistant_message"]  # the call itself belongs to the first run
    assert "Likes green tea" in _human(base, agent)
    unknown = httpx.post(url, timeout=30, json={"messages": [
        {"type": "approval", "approvals": [{"tool_call_id": "call_nope", "approve": False}]}]})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_tool_call"


def test_letta_stream_ends_with_the_approval_request(server) -> None:
    base = server.base_url
    agent = _approving_agent(base)
    with httpx.stream("POST", f"{base}/v1/agents/{agent}/messages/stream", headers=sim_headers(script=SCRIPT),
                      json={"messages": [{"role": "user", "content": "remember"}]}, timeout=30) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    kinds = [e.get("message_type") for e in events]
    assert "approval_request_message" in kinds and "tool_call_message" not in kinds
    assert events[kinds.index("approval_request_message")]["tool_call"]["name"] == "memory_insert"
    assert {"message_type": "stop_reason", "stop_reason": "requires_approval"} in events
