"""Context-window management: 200 turns through a 2,000-token window without one oversized request."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest

from helpers import create_agent, sdk, sim_headers
from proxy.sim import SimConfig, run_sim_in_thread
from proxy.sim.script import prompt_estimate

WINDOW = 2000


@pytest.fixture(scope="module")
def strict_sim() -> Iterator[str]:
    """A simulator that rejects any request over the window, as a real model would."""
    base_url, stop = run_sim_in_thread(SimConfig(max_context_tokens=WINDOW, record=True))
    yield base_url
    stop()


def sim_estimate(body: dict[str, Any]) -> int:
    return prompt_estimate(body["messages"], body.get("tools"))


def drain(sim_url: str) -> list[dict[str, Any]]:
    root = sim_url.rsplit("/v1", 1)[0]
    requests = httpx.get(root + "/sim/requests").json()
    httpx.delete(root + "/sim/requests")
    return requests


def in_context(server: Any, agent: str) -> list[Any]:
    live = server.call(server.rt.memory.get(agent))
    return list(live.messages)


def test_two_hundred_turns_stay_inside_a_small_window(make_server, strict_sim) -> None:
    srv = make_server(upstream_url=strict_sim)
    agent = create_agent(srv.base_url, context_window_limit=WINDOW)
    client = sdk(srv.base_url)
    drain(strict_sim)
    oversized: list[int] = []
    upstream_calls = 0
    for turn in range(200):
        text = f"turn {turn}: the weather in city number {turn} is mild and my favourite number is {turn * 7}"
        headers = {}
        if turn % 25 == 3:  # now and then a memory edit, so tool call/result pairs get evicted too
            headers = sim_headers(script=[{"tool_calls": [{"name": "memory_rethink", "arguments": {
                "label": "human", "new_memory": f"Name: Ada. Last noted turn {turn}."}}]}, {"reply": "noted"}])
        reply = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": text}],
                                               extra_headers=headers)
        assert reply.choices[0].finish_reason == "stop"
        if turn % 40 == 39:
            for body in drain(strict_sim):
                upstream_calls += 1
                if sim_estimate(body) > WINDOW:
                    oversized.append(sim_estimate(body))
    for body in drain(strict_sim):
        upstream_calls += 1
        if sim_estimate(body) > WINDOW:
            oversized.append(sim_estimate(body))
    assert upstream_calls >= 200 and oversized == []

    runs = httpx.get(f"{srv.base_url}/v1/runs/", params={"agent_id": agent, "limit": 1000}).json()
    assert len(runs) == 200 and {r["status"] for r in runs} == {"completed"}

    messages = in_context(srv, agent)
    summary = messages[0]
    assert summary.role == "system" and summary.metadata["kind"] == "summary"
    assert sum(1 for m in messages if m.metadata.get("kind") == "summary") == 1
    stored = httpx.get(f"{srv.base_url}/v1/agents/{agent}/messages", params={"order": "asc", "limit": 1000}).json()
    conversation = [m for m in stored if m["message_type"] != "system_message"]
    kept = [m for m in messages if m.metadata.get("kind") != "summary"]
    # The summary chain accounts for every conversation message that left the context.
    assert summary.metadata["hidden"] == len(conversation) - len(kept)
    assert summary.metadata["hidden"] > 300
    # Every turn's user message is still stored (recall), however long ago it was evicted.
    users = [m["content"] for m in stored if m["message_type"] == "user_message"]
    assert len(users) == 200 and users[0].startswith("turn 0:")
    # No tool result lost its call: each kept tool message follows the assistant message that made it.
    ids = set()
    for message in kept:
        if message.role == "assistant" and message.tool_calls:
            ids.update(c["id"] for c in message.tool_calls)
        if message.role == "tool":
            assert message.tool_call_id in ids

    context = httpx.get(f"{srv.base_url}/v1/agents/{agent}/context").json()
    assert context["context_window_size_max"] == WINDOW
    assert 0 < context["context_window_size_current"] <= WINDOW
    assert context["summary_memory"] and context["num_tokens_summary_memory"] > 0
    assert context["num_recall_memory"] >= 400


def test_summary_failure_falls_back_to_truncation(make_server, strict_sim) -> None:
    srv = make_server(upstream_url=strict_sim)
    agent = create_agent(srv.base_url, context_window_limit=WINDOW)
    client = sdk(srv.base_url)
    # This reply carries a marker that makes the simulator fail any request whose transcript quotes it:
    # the turns never do (it is not their last user message), the summary call of its eviction does.
    poison = 'I will remember. [[sim:{"fail_status": 500}]]'
    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "first message"}],
                                   extra_headers=sim_headers(reply=poison))
    summary = None
    for turn in range(60):
        out = client.chat.completions.create(
            model=agent, messages=[{"role": "user", "content": f"turn {turn} with some words to fill the window up"}])
        assert out.choices[0].finish_reason == "stop"
        first = in_context(srv, agent)[0]
        if first.metadata.get("kind") == "summary":
            summary = first.metadata["summary"]
            break
    assert summary is not None, "no compaction happened"
    # The summary call failed, so the fallback (no model) quotes the evicted user turns instead.
    assert not summary.startswith("Echo:") and "first message" in summary


def test_forced_summarize_and_reset(make_server, strict_sim) -> None:
    srv = make_server(upstream_url=strict_sim)
    agent = create_agent(srv.base_url)
    client = sdk(srv.base_url)
    for turn in range(6):
        client.chat.completions.create(model=agent, messages=[{"role": "user", "content": f"hello {turn}"}])
    before = len(in_context(srv, agent))
    assert httpx.post(f"{srv.base_url}/v1/agents/{agent}/summarize").status_code == 200
    after = in_context(srv, agent)
    assert after[0].metadata.get("kind") == "summary" and len(after) < before
    reset = httpx.patch(f"{srv.base_url}/v1/agents/{agent}/reset-messages")
    assert reset.status_code == 200 and reset.json()["message_ids"] == []
    assert in_context(srv, agent) == []
    stored = httpx.get(f"{srv.base_url}/v1/agents/{agent}/messages", params={"limit": 1000}).json()
    assert len([m for m in stored if m["message_type"] == "user_message"]) == 6
    blocks = httpx.get(f"{srv.base_url}/v1/agents/{agent}/core-memory/blocks").json()
    assert {b["label"] for b in blocks} == {"human", "persona", "policy"}


def test_autoclear_agents_keep_no_history_between_turns(server, sim_requests) -> None:
    agent = create_agent(server.base_url, message_buffer_autoclear=True)
    client = sdk(server.base_url)
    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "first"}])
    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "second"}])
    sent = sim_requests()[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"] and sent[-1]["content"] == "second"
    state = httpx.get(f"{server.base_url}/v1/agents/{agent}").json()
    assert state["message_ids"] == []
    stored = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages").json()
    assert len(stored) == 4  # still in recall


def test_preview_raw_payload_is_what_the_next_turn_sends(server, sim_requests) -> None:
    agent = create_agent(server.base_url, temperature=0.3)
    client = sdk(server.base_url)
    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "earlier"}])
    ask = {"messages": [{"role": "user", "content": "what next?"}]}
    preview = httpx.post(f"{server.base_url}/v1/agents/{agent}/messages/preview-raw-payload", json=ask).json()
    client.chat.completions.create(model=agent, messages=ask["messages"])
    sent = {k: v for k, v in sim_requests()[-1].items() if not k.startswith("_")}
    assert preview == sent
    # Previewing stored nothing.
    stored = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages").json()
    assert [m["content"] for m in stored if m["message_type"] == "user_message"].count("what next?") == 1


def test_an_upstream_smaller_than_configured_is_learned_and_no_turn_fails(make_server, strict_sim) -> None:
    srv = make_server(upstream_url=strict_sim)
    agent = create_agent(srv.base_url, context_window_limit=100_000)  # the model really has 2,000
    client = sdk(srv.base_url)
    drain(strict_sim)
    for turn in range(60):
        out = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": (
            f"turn {turn}: a message long enough that sixty of them overflow two thousand tokens")}])
        assert out.choices[0].finish_reason == "stop"
    sizes = [sim_estimate(body) for body in drain(strict_sim)]
    rejected = [i for i, size in enumerate(sizes) if size > WINDOW]
    assert len(rejected) == 1  # refused once, then the agent knows the real window
    assert all(size <= WINDOW for size in sizes[rejected[0] + 1:])
    assert in_context(srv, agent)[0].metadata.get("kind") == "summary"
    assert httpx.get(f"{srv.base_url}/v1/agents/{agent}/context").json()["context_window_size_max"] == WINDOW
