"""Letta's own Python SDK (`letta-client`), with strict response validation, against memproxy's Letta API."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

import httpx
import pytest
from letta_client import BadRequestError, Letta

from helpers import agent_calls, raw_events, sim_headers, system_of

MEMORY_EDIT = {"name": "memory_insert", "arguments": {"label": "human", "new_str": "Likes tea."}}
TOOL_THEN_ANSWER = [{"reply": "Noting that.", "content_then_tool_calls": True, "tool_calls": [MEMORY_EDIT]},
                    {"reply": "Noted: you like tea."}]


def letta(server: Any, **sim: Any) -> Letta:
    """A strict client: any response that does not match the SDK's types raises instead of passing through."""
    return Letta(base_url=server.base_url, api_key="unused", max_retries=0, _strict_response_validation=True,
                 default_headers=sim_headers(**sim) if sim else None)


def new_agent(client: Letta, **extra: Any) -> Any:
    return client.agents.create(name="letta-sdk", system="You are a test agent.", model="sim-small",
                                memory_blocks=[{"label": "human", "value": "Name: Ada", "limit": 200},
                                               {"label": "persona", "value": "I am helpful."},
                                               {"label": "policy", "value": "Be kind.", "read_only": True}],
                                **extra)


@pytest.fixture
def client(server: Any) -> Any:
    made: list[str] = []
    sdk = letta(server)
    original = sdk.agents.create

    def create(**kw: Any) -> Any:
        agent = original(**kw)
        made.append(agent.id)
        return agent

    sdk.agents.create = create  # type: ignore[method-assign]
    yield sdk
    for agent_id in made:
        httpx.delete(f"{server.base_url}/v1/agents/{agent_id}", timeout=10)


def test_agents_blocks_and_models_validate_and_auto_paginate(client: Letta) -> None:
    agents = [new_agent(client) for _ in range(3)]
    got = client.agents.retrieve(agents[0].id)
    assert got.id == agents[0].id and [b.label for b in got.blocks] == ["human", "persona", "policy"]
    listed = [a.id for a in client.agents.list(limit=2)]  # the SDK follows `after` across pages
    assert set(a.id for a in agents) <= set(listed) and len(listed) == len(set(listed))
    renamed = client.agents.update(agents[0].id, name="renamed", timezone="Asia/Tokyo")
    assert (renamed.name, renamed.timezone) == ("renamed", "Asia/Tokyo")

    labels = [b.label for b in client.agents.blocks.list(agents[0].id, limit=1)]
    assert labels == ["human", "persona", "policy"]  # three pages of one, then an empty one ends it
    human = client.agents.blocks.retrieve("human", agent_id=agents[0].id)
    client.agents.blocks.update("human", agent_id=agents[0].id, value="Name: Ada Lovelace")
    assert client.agents.blocks.retrieve("human", agent_id=agents[0].id).value == "Name: Ada Lovelace"

    shared = client.blocks.create(label="team", value="We ship on Fridays.")
    for agent in agents:
        client.agents.blocks.attach(shared.id, agent_id=agent.id)
    sharers = [a.id for a in client.blocks.agents.list(shared.id, limit=1)]
    assert sorted(sharers) == sorted(a.id for a in agents)
    client.agents.blocks.detach(shared.id, agent_id=agents[2].id)
    assert sorted(a.id for a in client.blocks.agents.list(shared.id)) == sorted(a.id for a in agents[:2])
    assert client.blocks.retrieve(shared.id).value == "We ship on Fridays."
    assert shared.id in [b.id for b in client.blocks.list(label="team", limit=1)]
    client.blocks.update(shared.id, value="We ship on Thursdays.")
    assert human.id != shared.id

    agent_tools = [t.name for t in client.agents.tools.list(agents[0].id, limit=1)]  # pages of one tool
    assert agent_tools == [t.name for t in got.tools] and len(agent_tools) > 1
    everything = [t.id for t in client.tools.list(limit=2)]
    assert len(everything) == len(set(everything)) and {t.id for t in got.tools} <= set(everything)

    models = client.models.list()
    assert [m.model for m in models] == ["sim-small", "sim-large"] and models[0].handle == "openai/sim-small"
    client.agents.delete(agents[2].id)
    with pytest.raises(Exception):
        client.agents.retrieve(agents[2].id)


def test_passages_and_their_search_carry_ids(client: Letta) -> None:
    agent = new_agent(client)
    created = client.agents.passages.create(agent.id, text="The lighthouse keeper's cat is called Biscuit.",
                                            tags=["pets"])
    assert [p.text for p in client.agents.passages.list(agent.id)] == [created[0].text]
    found = client.agents.passages.search(agent.id, query="lighthouse cat")
    assert found.count == 1 and found.results[0].id == created[0].id
    client.agents.passages.delete(created[0].id, agent_id=agent.id)
    assert client.agents.passages.list(agent.id) == []


def test_messages_create_shows_server_tools_then_history_matches(server: Any, client: Letta) -> None:
    agent = new_agent(client)
    response = letta(server, script=TOOL_THEN_ANSWER).agents.messages.create(
        agent.id, messages=[{"role": "user", "content": "I like tea."}])
    kinds = [m.message_type for m in response.messages]
    assert kinds == ["assistant_message", "tool_call_message", "tool_return_message", "assistant_message"]
    call, result = response.messages[1], response.messages[2]
    assert call.tool_call.name == "memory_insert" and result.tool_call_id == call.tool_call.tool_call_id
    assert result.status == "success" and response.messages[3].content == "Noted: you like tea."
    assert response.stop_reason.stop_reason == "end_turn"
    assert response.usage.step_count == 2 and response.usage.total_tokens > 0
    run_id = response.messages[0].run_id
    run = client.runs.retrieve(run_id)
    assert (run.status, run.stop_reason, run.agent_id) == ("completed", "end_turn", agent.id)
    assert client.agents.blocks.retrieve("human", agent_id=agent.id).value.endswith("Likes tea.")

    history = list(client.agents.messages.list(agent.id, order="asc", limit=2))  # pages of two
    assert [m.message_type for m in history] == ["user_message", *kinds]
    assert history[2].tool_call.tool_call_id == call.tool_call.tool_call_id
    assert [m.id for m in history[1:]] == [m.id for m in response.messages]  # the stored messages themselves
    assert [r.id for r in client.runs.list(agent_id=agent.id)] == [run_id]

    compacted = client.agents.messages.compact(agent.id)
    assert compacted.num_messages_before == 4 and compacted.num_messages_after < 4  # stored messages, not parts
    assert client.agents.messages.reset(agent.id).message_ids == []


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK steers to create(streaming=True)
def test_stream_sends_steps_or_tokens_then_stop_usage_and_done(server: Any, client: Letta) -> None:
    agent = new_agent(client)
    steps = list(letta(server, script=TOOL_THEN_ANSWER).agents.messages.stream(
        agent.id, messages=[{"role": "user", "content": "I like tea."}]))
    assert [e.message_type for e in steps] == ["assistant_message", "tool_call_message", "tool_return_message",
                                               "assistant_message", "stop_reason", "usage_statistics"]
    assert steps[3].content == "Noted: you like tea." and steps[5].step_count == 2

    tokens = list(letta(server, reply="One two three.").agents.messages.create(
        agent.id, messages=[{"role": "user", "content": "count"}], streaming=True, stream_tokens=True))
    chunks = [e for e in tokens if e.message_type == "assistant_message"]
    assert len(chunks) > 1 and len({c.id for c in chunks}) == 1  # one message, reassembled by its id
    assert "".join(c.content for c in chunks) == "One two three."
    assert [e.message_type for e in tokens[-2:]] == ["stop_reason", "usage_statistics"]

    raw = httpx.post(f"{server.base_url}/v1/agents/{agent.id}/messages/stream", timeout=30,
                     json={"messages": [{"role": "user", "content": "hi"}]}, headers=sim_headers(reply="Hi."))
    events, _ = raw_events(raw)
    assert [e if e == "[DONE]" else e["message_type"] for e in events] == \
        ["assistant_message", "stop_reason", "usage_statistics", "[DONE]"]


def test_request_options_filter_bound_and_refuse(server: Any, client: Letta) -> None:
    agent = new_agent(client)
    only = letta(server, script=TOOL_THEN_ANSWER).agents.messages.create(
        agent.id, input="I like tea.", include_return_message_types=["tool_return_message"])
    assert [m.message_type for m in only.messages] == ["tool_return_message"]
    bounded = letta(server, script=[{"tool_calls": [MEMORY_EDIT]}, {"reply": "never reached"}]).agents.messages.create(
        agent.id, messages=[{"role": "user", "content": "again"}], max_steps=1)
    assert bounded.stop_reason.stop_reason == "max_steps" and bounded.usage.step_count == 1
    with pytest.raises(BadRequestError) as refused:
        client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "x"}], enable_thinking="true")
    assert refused.value.body["error"]["param"] == "enable_thinking"
    with pytest.raises(BadRequestError) as refused:
        client.agents.create(name="sleepy", enable_sleeptime=True)
    assert refused.value.body["error"]["param"] == "enable_sleeptime"


def _wait(check: Callable[[], bool]) -> None:
    for _ in range(300):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("the run never reached the awaited state")


def test_async_run_completes_and_cancel_stops_one_in_flight(server: Any, client: Letta) -> None:
    agent = new_agent(client)
    run = letta(server, reply="Done in the background.").agents.messages.create_async(
        agent.id, messages=[{"role": "user", "content": "work"}])
    assert run.status in ("running", "completed") and run.agent_id == agent.id and run.background
    _wait(lambda: client.runs.retrieve(run.id).status == "completed")
    assert client.runs.retrieve(run.id).stop_reason == "end_turn"
    last = list(client.agents.messages.list(agent.id, limit=1))
    assert last[0].message_type == "assistant_message" and last[0].content == "Done in the background."

    slow = letta(server, ttft_ms=20000).agents.messages.create_async(
        agent.id, messages=[{"role": "user", "content": "slow work"}])
    assert client.agents.messages.cancel(agent.id) == {slow.id: "cancelled"}
    _wait(lambda: client.runs.retrieve(slow.id).status == "cancelled")
    assert client.agents.messages.cancel(agent.id, run_ids=[slow.id]) == {slow.id: "not running"}


def test_timezone_dates_the_memory_and_initial_messages_open_history(server: Any, client: Letta,
                                                                      sim_requests: Any) -> None:
    # UTC+14 and UTC-12 never share a date, so the compiled date proves which zone was used.
    agents = {zone: new_agent(client, timezone=zone, initial_message_sequence=[
        {"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada!"}])
        for zone in ("Pacific/Kiritimati", "Etc/GMT+12")}
    for zone, agent in agents.items():
        assert agent.timezone == zone
        before = datetime.now(ZoneInfo(zone)).date().isoformat()
        letta(server, reply="ok").agents.messages.create(agent.id, messages=[{"role": "user", "content": "date?"}])
        after = datetime.now(ZoneInfo(zone)).date().isoformat()
        upstream = [r for r in agent_calls(sim_requests) if r["messages"][-1]["content"] == "date?"][-1]
        system = system_of(upstream)
        assert f"The current system date is: {before}" in system or f"The current system date is: {after}" in system
        assert [(m["role"], m["content"]) for m in upstream["messages"][1:3]] == \
            [("user", "My name is Ada."), ("assistant", "Hello Ada!")]
        history = list(client.agents.messages.list(agent.id, order="asc"))
        assert [m.message_type for m in history[:2]] == ["user_message", "assistant_message"]


def test_tool_rules_and_an_approval_round_trip_validate(server: Any) -> None:
    client = letta(server, script=[{"tool_calls": [MEMORY_EDIT]}, {"reply": "Noted: you like tea."}])
    agent = new_agent(client, tool_rules=[{"type": "max_count_per_step", "tool_name": "memory_insert",
                                           "max_count_limit": 3}])
    try:
        assert agent.tool_rules[0].type == "max_count_per_step"
        updated = client.agents.tools.update_approval("memory_insert", agent_id=agent.id, body_requires_approval=True)
        assert [r.type for r in updated.tool_rules] == ["max_count_per_step", "requires_approval"]
        first = client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "I like tea"}])
        request = [m for m in first.messages if m.message_type == "approval_request_message"]
        assert first.stop_reason.stop_reason == "requires_approval" and len(request) == 1
        call_id = request[0].tool_call.tool_call_id
        second = client.agents.messages.create(agent.id, messages=[
            {"type": "approval", "approvals": [{"type": "approval", "tool_call_id": call_id, "approve": True}]}])
        assert [m.message_type for m in second.messages] == ["tool_return_message", "assistant_message"]
        assert client.agents.blocks.retrieve("human", agent_id=agent.id).value.endswith("Likes tea.")
    finally:
        httpx.delete(f"{server.base_url}/v1/agents/{agent.id}", timeout=10)
