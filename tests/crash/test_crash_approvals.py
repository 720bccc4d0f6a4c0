"""SIGKILL around an approval: a call acknowledged as waiting survives, and an interrupted approval can be resent."""

from __future__ import annotations

import json
from typing import Any

import httpx

from helpers import sim_headers

INSERT = {"name": "memory_insert", "arguments": {"label": "human", "new_str": "Likes green tea"}}
SCRIPT = [{"tool_calls": [INSERT]}, "Saved."]
QUESTION = {"role": "user", "content": "remember I like green tea"}


def _post(base: str, agent: str, messages: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", headers=sim_headers(script=SCRIPT), timeout=30,
                      json={"model": agent, "messages": messages})


def test_a_waiting_call_survives_sigkill_and_a_killed_approval_can_be_resent(server_factory, upstream) -> None:
    server = server_factory("approvals")
    server.start()
    base = server.base_url
    agent = httpx.post(f"{base}/v1/agents/", json={"memory_blocks": [{"label": "human", "value": "Name: Ada"}]},
                             timeout=10).json()["id"]
    httpx.patch(f"{base}/v1/agents/{agent}/tools/approval/memory_insert", json={"requires_approval": True},
                timeout=10)
    first = _post(base, agent, [QUESTION])
    assert first.status_code == 200 and first.json()["choices"][0]["finish_reason"] == "tool_calls"
    server.kill()  # right after the acknowledgement

    server.start()
    message = first.json()["choices"][0]["message"]
    call = message["tool_calls"][0]
    answer = [QUESTION, {"role": "assistant", "content": None, "tool_calls": [call]},
              {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"approve": True})}]
    # Killed the instant the approved turn asks the upstream for its next step.
    fired = upstream[1].arm(server.pid, lambda body: body["messages"][-1].get("tool_call_id") == call["id"], 0.0)
    try:
        _post(server.base_url, agent, answer)
    except httpx.HTTPError:
        pass
    assert fired.wait(10)
    server.kill()  # reaps what the tripwire killed
    server.start()
    resent = _post(server.base_url, agent, answer)
    assert resent.status_code == 200, resent.text
    assert resent.json()["choices"][0]["message"]["content"] == "Saved."
    human = httpx.get(f"{server.base_url}/v1/agents/{agent}/core-memory/blocks/human", timeout=10).json()
    assert "Likes green tea" in human["value"]  # at least once: a server tool killed mid-turn may run again
