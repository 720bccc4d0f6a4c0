"""Letta's Python SDK (`letta-client`), strictly validated, through the endpoints the first tour does not reach:
custom tools and a turn that calls one, MCP servers and their tools, agent files, runs followed by stream,
and the agent's context, compaction, reset and search. Where the SDK has no method for an endpoint memproxy
implements, the SDK's own raw request helper (`client.get/post(..., cast_to=...)`) calls it, strictly too.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from letta_client import Letta, NotFoundError
from letta_client.types import Tool

from client_support import wait_for
from test_client_letta_python import letta, new_agent

ROLL = '''
def roll(sides: int) -> str:
    """Roll a die.

    Args:
        sides: How many faces the die has.
    """
    return f"rolled a {sides} on a d{sides}"
'''
ROLL_TURN = [{"tool_calls": [{"name": "roll", "arguments": {"sides": 6}}]}, {"reply": "You rolled a six."}]
ADD_TURN = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, {"reply": "Two and three make five."}]


@pytest.fixture
def client(server: Any) -> Any:
    yield letta(server)


def _cleanup(server: Any, *paths: str) -> None:
    for path in paths:
        httpx.delete(f"{server.base_url}{path}", timeout=10)


def test_custom_tools_are_managed_attached_and_called_in_a_turn(server: Any, client: Letta) -> None:
    created = client.tools.create(source_code=ROLL, tags=["dice"])
    agent = new_agent(client)
    try:
        assert created.name == "roll" and created.tool_type == "custom"
        assert created.json_schema["parameters"]["required"] == ["sides"]
        assert client.tools.retrieve(created.id).source_code == ROLL
        updated = client.tools.update(created.id, description="Roll one die.")
        assert updated.description == "Roll one die." and updated.id == created.id
        upserted = client.tools.upsert(source_code=ROLL.replace("rolled a", "you rolled a"), tags=["dice", "games"])
        assert upserted.id == created.id and upserted.tags == ["dice", "games"]  # the same tool, changed
        fresh = client.tools.upsert(source_code=ROLL.replace("def roll(", "def roll_again("))
        assert fresh.name == "roll_again" and fresh.id != created.id  # none of that name: created
        client.tools.delete(fresh.id)
        assert [t.id for t in client.tools.list(name="roll")] == [created.id]
        everything = [t.id for t in client.tools.list(limit=1)]  # pages of one, to the end
        assert created.id in everything and len(everything) == len(set(everything)) > 1

        attached = client.agents.tools.attach(created.id, agent_id=agent.id)
        assert "roll" in [t.name for t in attached.tools]
        answer = letta(server, script=ROLL_TURN).agents.messages.create(
            agent.id, messages=[{"role": "user", "content": "Roll a d6."}])
        kinds = [m.message_type for m in answer.messages]
        assert kinds == ["tool_call_message", "tool_return_message", "assistant_message"]
        call, result = answer.messages[0], answer.messages[1]
        assert call.tool_call.name == "roll" and json.loads(call.tool_call.arguments) == {"sides": 6}
        assert result.status == "success" and "you rolled a 6 on a d6" in result.tool_return
        assert answer.messages[2].content == "You rolled a six."

        detached = client.agents.tools.detach(created.id, agent_id=agent.id)
        assert "roll" not in [t.name for t in detached.tools]
        client.tools.delete(created.id)
        with pytest.raises(NotFoundError):
            client.tools.retrieve(created.id)
    finally:
        _cleanup(server, f"/v1/agents/{agent.id}", f"/v1/tools/{created.id}")


def test_mcp_servers_their_tools_and_a_turn_calling_one(server: Any, client: Letta, mcp_url: str) -> None:
    created = client.mcp_servers.create(server_name="sdk-mcp", config={
        "mcp_server_type": "streamable_http", "server_url": mcp_url, "auth_header": "Authorization",
        "auth_token": "Bearer sdk-token-abcdefghijklmnop"})
    agent = new_agent(client)
    try:
        assert created.mcp_server_type == "streamable_http" and created.server_url == mcp_url
        assert created.auth_token != "Bearer sdk-token-abcdefghijklmnop"  # masked, never shown back
        assert client.mcp_servers.retrieve(created.id).id == created.id
        renamed = client.mcp_servers.update(created.id, server_name="sdk-mcp-renamed", config={
            "mcp_server_type": "streamable_http", "auth_token": "Bearer sdk-token-qrstuvwxyzabcdef"})
        assert (renamed.server_name, renamed.server_url, renamed.auth_header) == \
            ("sdk-mcp-renamed", mcp_url, "Authorization")  # what was not given is kept
        assert created.id in [s.id for s in client.mcp_servers.list()]
        tools = {t.name: t for t in client.mcp_servers.tools.list(created.id)}
        assert {"add", "weather"} <= set(tools) and tools["add"].tool_type == "external_mcp"
        assert client.mcp_servers.tools.retrieve(tools["add"].id, mcp_server_id=created.id).name == "add"

        # No SDK method registers an MCP tool as a tool (Letta's add_mcp_tool): the SDK's raw helper does.
        registered = client.post(f"/v1/mcp-servers/{created.id}/tools/add", cast_to=Tool)
        assert registered.id == tools["add"].id
        attached = client.agents.tools.attach(registered.id, agent_id=agent.id)
        assert "add" in [t.name for t in attached.tools]
        answer = letta(server, script=ADD_TURN).agents.messages.create(
            agent.id, messages=[{"role": "user", "content": "2 + 3?"}])
        assert [m.message_type for m in answer.messages] == \
            ["tool_call_message", "tool_return_message", "assistant_message"]
        assert answer.messages[1].status == "success" and "5" in answer.messages[1].tool_return

        assert client.mcp_servers.delete(created.id) is None  # 204, as Letta's reference says
        assert "add" not in [t.name for t in client.agents.retrieve(agent.id).tools]
        with pytest.raises(NotFoundError):
            client.mcp_servers.retrieve(created.id)
    finally:
        _cleanup(server, f"/v1/agents/{agent.id}", f"/v1/mcp-servers/{created.id}")


def test_an_agent_file_round_trips_through_the_sdk(server: Any, client: Letta) -> None:
    tool = client.tools.create(source_code=ROLL)
    agent = new_agent(client, tool_ids=[tool.id], tags=["af"])
    letta(server, reply="Hello Ada.").agents.messages.create(agent.id, messages=[{"role": "user", "content": "hi"}])
    exported = client.agents.export_file(agent.id)
    document = json.loads(exported)
    assert [a["name"] for a in document["agents"]] == ["letta-sdk"] and "roll" in [t["name"] for t in
                                                                                  document["tools"]]
    imported = client.agents.import_file(file=("agent.af", exported.encode(), "application/json"),
                                         override_name="letta-sdk-copy")
    [copy_id] = imported.agent_ids
    try:
        copy = client.agents.retrieve(copy_id)
        assert copy.name == "letta-sdk-copy" and [b.label for b in copy.blocks] == ["human", "persona", "policy"]
        assert "roll" in [t.name for t in copy.tools]
        texts = [m.content for m in client.agents.messages.list(copy_id, order="asc")
                 if m.message_type in ("user_message", "assistant_message")]
        assert texts == ["hi", "Hello Ada."]
        again = json.loads(client.agents.export_file(copy_id))
        assert again["agents"][0]["name"] == "letta-sdk-copy"
    finally:
        _cleanup(server, f"/v1/agents/{agent.id}", f"/v1/agents/{copy_id}", f"/v1/tools/{tool.id}")


def test_runs_are_listed_retrieved_and_followed_by_stream(resumable_server: Any) -> None:
    client = letta(resumable_server, reply="Done in the background, step by step.", token_delay_ms=2)
    agent = new_agent(client)
    run = client.agents.messages.create_async(agent.id, messages=[{"role": "user", "content": "work"}])
    assert run.agent_id == agent.id and run.background
    followed = list(client.runs.messages.stream(run.id, starting_after=0))  # POST /v1/runs/{id}/stream
    assert [c.seq_id for c in followed] == list(range(1, len(followed) + 1))
    assert [c.message_type for c in followed][-2:] == ["stop_reason", "usage_statistics"]
    text = "".join(c.content for c in followed if c.message_type == "assistant_message")
    assert text == "Done in the background, step by step."
    done = client.runs.retrieve(run.id)
    assert done.status == "completed" and done.stop_reason == "end_turn"
    second = client.agents.messages.create_async(agent.id, messages=[{"role": "user", "content": "more"}])
    list(client.runs.messages.stream(second.id))
    listed = [r.id for r in client.runs.list(agent_id=agent.id, limit=1)]  # pages of one, newest first
    assert listed == [second.id, run.id]

    # GET /v1/runs/{id}/stream (Letta's resume by `starting_after`): the SDK only POSTs; its raw helper GETs,
    # and each event still validates as the SDK's LettaStreamingResponse.
    from letta_client.types.agents import LettaStreamingResponse
    from letta_client._models import validate_type

    raw = httpx.get(f"{resumable_server.base_url}/v1/runs/{run.id}/stream", params={"starting_after": 2},
                    timeout=30)
    events = [line[len("data: "):] for line in raw.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    tail = [validate_type(type_=LettaStreamingResponse, value=json.loads(e)) for e in events[:-1]]
    assert [c.model_dump() for c in tail] == [c.model_dump() for c in followed[2:]]
    httpx.delete(f"{resumable_server.base_url}/v1/agents/{agent.id}", timeout=10)


def test_context_compaction_reset_search_and_the_rest(server: Any, client: Letta) -> None:
    agent = new_agent(client)
    try:
        assert client.health().status == "ok"
        for text in ("My cat is called Biscuit.", "I live by the lighthouse."):
            letta(server, reply="Noted.").agents.messages.create(agent.id, messages=[{"role": "user",
                                                                                     "content": text}])
        # No SDK method for these three memproxy routes: the SDK's raw helper calls them (cast to a dict).
        context = client.get(f"/v1/agents/{agent.id}/context", cast_to=dict)
        assert context["num_messages"] >= 5 and context["context_window_size_max"] > 0
        preview = client.post(f"/v1/agents/{agent.id}/messages/preview-raw-payload", cast_to=dict,
                              body={"messages": [{"role": "user", "content": "next"}]})
        assert preview["messages"][-1]["content"] == "next"
        # (Letta's SDK searches `/v1/messages/search`, across agents, which memproxy does not serve.)
        hits = wait_for(lambda: client.post("/v1/agents/messages/search", cast_to=list, body={
            "agent_id": agent.id, "query": "Biscuit", "search_mode": "fts"}), timeout=10)  # indexed after the turn
        assert "Biscuit" in hits[0]["message"]["content"][0]["text"], hits
        openai_shape = client.get("/v1/models", cast_to=dict)  # OpenAI's list, for OpenAI SDKs
        assert openai_shape["object"] == "list"

        compacted = client.agents.messages.compact(agent.id)
        assert compacted.num_messages_before >= compacted.num_messages_after
        reset = client.agents.messages.reset(agent.id)
        assert reset.id == agent.id
        after = client.get(f"/v1/agents/{agent.id}/context", cast_to=dict)
        assert after["num_messages"] < context["num_messages"]  # out of the context; the history keeps them

        block = client.blocks.create(label="scratch", value="temporary")
        client.blocks.delete(block.id)
        with pytest.raises(NotFoundError):
            client.blocks.retrieve(block.id)
    finally:
        _cleanup(server, f"/v1/agents/{agent.id}")
