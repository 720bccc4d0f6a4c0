"""Letta agent files: export -> import over HTTP and through letta-client, a hand-written `.af` chatted with, bad files."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import httpx
import pytest
from letta_client import Letta

from helpers import agent_calls, sim_headers

DICE = '''
def roll_dice(sides: int) -> str:
    """Roll a die.

    Args:
        sides: How many sides the die has.
    """
    return f"rolled {sides // 2} of {sides}"
'''


def hand_written_af(tool_name: str = "roll_dice") -> dict[str, Any]:
    """An agent file written from Letta's AgentFileSchema (v2): blocks, tools, tool rules, and a history."""
    source = DICE.replace("roll_dice", tool_name)
    call = {"id": "call_1", "type": "function", "function": {"name": tool_name, "arguments": '{"sides": 6}'}}
    return {
        "agents": [{
            "id": "agent-0", "name": "dice-keeper", "agent_type": "letta_v1_agent",
            "system": "You are a test agent who rolls dice.",
            "llm_config": {"model": "sim-small", "context_window": 32000, "model_endpoint_type": "openai",
                           "temperature": 0.5, "put_inner_thoughts_in_kwargs": False},
            "embedding_config": None, "tags": ["games"], "metadata": {"origin": "hand"},
            "block_ids": ["block-0", "block-1"], "tool_ids": ["tool-0", "tool-1"],
            "tool_rules": [{"tool_name": tool_name, "type": "continue_loop", "prompt_template": None},
                           {"tool_name": "memory_insert", "type": "continue_loop"}],
            "tool_exec_environment_variables": {"DICE_SEED": None},
            "messages": [
                {"type": "message", "id": "message-0", "role": "system",
                 "content": [{"type": "text", "text": "<compiled system prompt>"}]},
                {"type": "message", "id": "message-1", "role": "user",
                 "content": [{"type": "text", "text": "Roll a d6 for the old quest."}],
                 "created_at": "2025-05-01T10:00:00Z"},
                {"type": "message", "id": "message-2", "role": "assistant", "content": [], "tool_calls": [call],
                 "created_at": "2025-05-01T10:00:01Z"},
                {"type": "message", "id": "message-3", "role": "tool", "content": None, "tool_call_id": "call_1",
                 "name": tool_name, "tool_returns": [{"status": "success", "func_response": "rolled 3 of 6"}],
                 "created_at": "2025-05-01T10:00:02Z"},
                {"type": "message", "id": "message-4", "role": "assistant",
                 "content": [{"type": "text", "text": "The marmoset quest die shows 3."}],
                 "created_at": "2025-05-01T10:00:03Z", "otid": "x1", "sender_id": None},
            ],
            "in_context_message_ids": ["message-0", "message-1", "message-2", "message-3", "message-4"],
            "files_agents": [], "group_ids": [], "source_ids": [], "identity_ids": [], "project_id": None,
            "include_base_tools": True, "enable_sleeptime": None, "response_format": None, "hidden": None,
        }],
        "groups": [], "files": [], "sources": [], "mcp_servers": [],
        "blocks": [
            {"id": "block-0", "label": "human", "value": "Name: Ada. Plays dice.", "limit": 2000,
             "is_template": False, "preserve_on_migration": False, "read_only": False, "description": None},
            {"id": "block-1", "label": "persona", "value": "I keep the dice.", "limit": 2000, "metadata": {}},
        ],
        "tools": [
            {"id": "tool-0", "name": tool_name, "tool_type": "custom", "source_type": "python",
             "source_code": source, "json_schema": None, "tags": ["games"], "return_char_limit": 1000,
             "pip_requirements": None, "npm_requirements": None, "metadata_": {}},
            {"id": "tool-1", "name": "memory_insert", "tool_type": "letta_memory_core", "source_code": None,
             "json_schema": {"name": "memory_insert"}},
        ],
        "metadata": {"revision_id": "abc"}, "created_at": "2025-05-01T09:00:00Z",
    }


def upload(http: httpx.Client, document: Any, **form: str) -> httpx.Response:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return http.post("/v1/agents/import", files={"file": ("agent.af", raw, "application/json")}, data=form)


def counts(http: httpx.Client) -> tuple[int, int]:
    agents = http.get("/v1/agents/", params={"limit": 1000}).json()
    tools = http.get("/v1/tools/", params={"limit": 1000}).json()
    return len(agents), len(tools)


def without_dates(document: dict[str, Any]) -> dict[str, Any]:
    clean = json.loads(json.dumps(document))
    clean.pop("created_at")
    for agent in clean["agents"]:
        for message in agent["messages"]:
            message.pop("created_at", None)
    return clean


def test_export_then_import_over_http_recreates_the_agent_with_new_ids(
        http: httpx.Client, create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent(name="af-source", system="You are a test agent.", model="sim-small", tags=["t"],
                         memory_blocks=[{"label": "human", "value": "Name: Ada", "limit": 200},
                                        {"label": "persona", "value": "I am helpful.", "read_only": True}],
                         secrets={"API_TOKEN": "s3cret"},
                         tool_rules=[{"type": "max_count_per_step", "tool_name": "memory_insert", "max_count_limit": 5}])
    script = [{"tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "Likes tea."}}]},
              {"reply": "Noted."}]
    chat = http.post("/v1/chat/completions", headers=sim_headers(script=script),
                     json={"model": agent["id"], "messages": [{"role": "user", "content": "I like tea."}]})
    assert chat.status_code == 200, chat.text
    exported = http.get(f"/v1/agents/{agent['id']}/export")
    assert exported.status_code == 200 and "s3cret" not in exported.text  # secrets go out as null
    document = exported.json()
    [af] = document["agents"]
    assert af["id"] == "agent-0" and af["secrets"] == {"API_TOKEN": None}
    assert [b["value"] for b in document["blocks"]] == ["Name: Ada\nLikes tea.", "I am helpful."]
    assert [m["role"] for m in af["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert af["messages"][2]["tool_calls"][0]["function"]["name"] == "memory_insert"
    assert af["tool_rules"] == [{"tool_name": "memory_insert", "type": "max_count_per_step", "prompt_template": None,
                                 "max_count_limit": 5}]
    assert {t["name"] for t in document["tools"]} == set(af and [t["name"] for t in document["tools"]])

    imported = upload(http, document)
    assert imported.status_code == 200, imported.text
    [new_id] = imported.json()["agent_ids"]
    assert new_id != agent["id"]
    state = http.get(f"/v1/agents/{new_id}").json()
    assert state["name"] == "af-source" and state["tags"] == ["t"] and state["model"] == agent["model"]
    assert {b["id"] for b in state["blocks"]}.isdisjoint({b["id"] for b in agent["blocks"]})
    again = http.get(f"/v1/agents/{new_id}/export").json()
    first, second = without_dates(document), without_dates(again)
    assert second["agents"][0].pop("secrets") is None  # a secret without its value is not kept
    first["agents"][0].pop("secrets")
    assert second == first  # the same agent file, local id for local id
    history = http.get(f"/v1/agents/{new_id}/messages", params={"limit": 50}).json()
    assert len(history) >= 3

    copy = upload(http, document, append_copy_suffix="true", strip_messages="true")
    [copy_id] = copy.json()["agent_ids"]
    assert http.get(f"/v1/agents/{copy_id}").json()["name"] == "af-source_copy"
    assert [m["role"] for m in http.get(f"/v1/agents/{copy_id}/export").json()["agents"][0]["messages"]] == ["system"]
    for ident in (agent["id"], new_id, copy_id):
        http.delete(f"/v1/agents/{ident}")


def test_the_letta_python_sdk_exports_and_imports_with_strict_validation(server: Any, http: httpx.Client,
                                                                          create_agent: Callable[..., Any]) -> None:
    agent = create_agent(name="sdk-af", system="You are a test agent.", model="sim-small",
                         memory_blocks=[{"label": "human", "value": "Name: Bo"}])
    client = Letta(base_url=server.base_url, api_key="unused", max_retries=0, _strict_response_validation=True)
    text = client.agents.export_file(agent["id"])
    assert json.loads(text)["agents"][0]["name"] == "sdk-af"
    response = client.agents.import_file(file=("sdk.af", text.encode(), "application/json"), override_name="sdk-copy",
                                         secrets=json.dumps({"API_TOKEN": "given-at-import"}))
    [new_id] = response.agent_ids
    state = client.agents.retrieve(new_id)
    assert state.name == "sdk-copy" and [b.value for b in state.blocks] == ["Name: Bo"]
    assert state.secrets is not None and [s.key for s in state.secrets] == ["API_TOKEN"]
    for ident in (agent["id"], new_id):
        http.delete(f"/v1/agents/{ident}")


def test_a_hand_written_agent_file_with_tools_rules_and_history_is_imported_and_chatted_with(
        http: httpx.Client, sim_requests: Callable[[], list[dict[str, Any]]]) -> None:
    response = upload(http, hand_written_af("roll_dice_af"), secrets=json.dumps({"DICE_SEED": "7"}))
    assert response.status_code == 200, response.text
    [agent_id] = response.json()["agent_ids"]
    try:
        state = http.get(f"/v1/agents/{agent_id}").json()
        assert state["name"] == "dice-keeper" and state["model"] == "openai/sim-small"
        assert {t["name"] for t in state["tools"]} == {"roll_dice_af", "memory_insert"}
        assert [b["label"] for b in state["blocks"]] == ["human", "persona"]
        script = [{"tool_calls": [{"name": "roll_dice_af", "arguments": {"sides": 20}}]}, {"reply": "A 10 this time."}]
        chat = http.post("/v1/chat/completions", headers=sim_headers(script=script),
                         json={"model": agent_id, "messages": [{"role": "user", "content": "Roll a d20."}]})
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"] == "A 10 this time."
        first, second = agent_calls(sim_requests, "You are a test agent who rolls dice.")
        sent = [m.get("content") for m in first["messages"]]
        assert "Roll a d6 for the old quest." in sent and "The marmoset quest die shows 3." in sent
        assert "rolled 3 of 6" in sent  # the imported tool result, in context
        assert "<compiled system prompt>" not in json.dumps(first["messages"])  # Letta's, replaced by ours
        assert {t["function"]["name"] for t in first["tools"]} >= {"roll_dice_af", "memory_insert"}
        assert second["messages"][-1] == {"role": "tool", "tool_call_id": second["messages"][-2]["tool_calls"][0]["id"],
                                          "content": "rolled 10 of 20"}  # the imported tool ran in the sandbox
        # The embedded backend indexes recall in the background, within about a second of the write.
        deadline, hits = time.monotonic() + 15, []
        while not hits and time.monotonic() < deadline:
            found = http.post("/v1/agents/messages/search", json={"agent_id": agent_id, "query": "marmoset"})
            assert found.status_code == 200, found.text
            hits = [hit for hit in found.json() if "marmoset" in json.dumps(hit)]
            time.sleep(0 if hits else 0.1)
        assert hits
    finally:
        http.delete(f"/v1/agents/{agent_id}")


def _mutate(path: str, value: Any) -> dict[str, Any]:
    document = hand_written_af("roll_dice_bad")
    target: Any = document
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    target[keys[-1]] = value
    return document


@pytest.mark.parametrize("document, status, param", [
    (b"{not json", 400, "file"),
    (b"[1, 2]", 400, "file"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "file"),
    ("café".encode("latin-1"), 400, "file"),
    ({"name": "legacy", "memory": {}}, 400, "file"),
    (_mutate("agents", "nope"), 400, "agents"),
    (_mutate("surprise", 1), 400, "surprise"),
    (_mutate("groups", [{"id": "group-0"}]), 400, "groups"),
    (_mutate("agents.0.tool_rules.0.type", "teleport"), 422, "agents[0].tool_rules[0].type"),
    (_mutate("agents.0.tool_rules.0.type", "max_count_per_step"), 422, "agents[0].tool_rules[0].max_count_limit"),
    (_mutate("agents.0.messages.1.role", "approval"), 400, "agents[0].messages[1].role"),
    (_mutate("agents.0.messages.1.content", [{"type": "image", "source": {}}]), 400, "agents[0].messages[1].content[0]"),
    (_mutate("agents.0.block_ids", ["block-9"]), 400, "agents[0].block_ids[0]"),
    (_mutate("agents.0.in_context_message_ids", ["message-77"]), 400, "agents[0].in_context_message_ids[0]"),
    (_mutate("agents.0.enable_sleeptime", True), 400, "agents[0].enable_sleeptime"),
    (_mutate("agents.0.agent_type", "memgpt_agent"), 400, "agents[0].agent_type"),
    (_mutate("agents.0.timezone", "Mars/Olympus"), 422, "agents[0].timezone"),
    (_mutate("blocks.1.label", "no spaces allowed"), 422, "blocks[1].label"),
    (_mutate("blocks.0.value", "z" * 3000), 422, "blocks[0].value"),
    (_mutate("tools.1.name", "web_search"), 400, "tools[1].name"),
    (_mutate("tools.0.source_code", "def broken(:\n"), 400, "tools[0].source_code"),
    (_mutate("tools.0.pip_requirements", [{"name": "numpy"}]), 400, "tools[0].pip_requirements"),
])
def test_a_bad_agent_file_is_refused_naming_the_field_and_nothing_is_stored(
        http: httpx.Client, expect_error: Callable[..., dict[str, Any]], document: Any, status: int,
        param: str) -> None:
    before = counts(http)
    error = expect_error(upload(http, document), status)
    assert error["param"] == param, error
    assert counts(http) == before and "roll_dice_bad" not in json.dumps(http.get("/v1/tools/").json())


def test_uploads_without_a_file_or_past_the_body_limit_are_refused(
        http: httpx.Client, make_server: Callable[..., Any], expect_error: Callable[..., dict[str, Any]]) -> None:
    expect_error(http.post("/v1/agents/import", data={"strip_messages": "true"},
                           files={"other": ("x", b"{}", "text/plain")}), 400)
    expect_error(http.post("/v1/agents/import", content=b"plain", headers={"content-type": "text/plain"}), 400)
    small = make_server(max_body_bytes=4096)
    document = hand_written_af()
    document["blocks"][0]["value"] = "x" * 1900
    document["agents"][0]["messages"] += [{"id": f"message-{i}", "role": "user", "content": "y" * 400}
                                          for i in range(5, 20)]
    with httpx.Client(base_url=small.base_url, timeout=30) as client:
        expect_error(upload(client, document), 413, "request_too_large")
        assert client.get("/v1/agents/").json() == []
        expect_error(client.get("/v1/agents/agent-00000000-0000-4000-8000-000000000000/export"), 404)
        expect_error(client.get("/v1/agents/not-an-id/export", params={"use_legacy_format": "true"}), 404)
