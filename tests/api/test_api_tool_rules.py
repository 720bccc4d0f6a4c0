"""Tool rules and approval settings through the agents and tools API: validated, stored, kept in step with tools."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from helpers import create_agent

ECHO = '''
def echo_rules(text: str) -> str:
    """Say it back.

    Args:
        text: What to say.
    """
    return text
'''


def _agent(base: str, agent: str) -> dict[str, Any]:
    return httpx.get(f"{base}/v1/agents/{agent}", timeout=10).json()


@pytest.mark.parametrize(("rules", "param"), [
    ([{"type": "teleport", "tool_name": "memory_insert"}], "tool_rules[0].type"),
    ([{"type": "exit_loop", "tool_name": "web_search"}], "tool_rules[0].tool_name"),
    ([{"type": "exit_loop", "tool_name": "memory_insert"},
      {"type": "constrain_child_tools", "tool_name": "memory_insert", "children": ["nope"]}], "tool_rules[1].children"),
    ([{"type": "max_count_per_step", "tool_name": "memory_insert", "max_count_limit": -1}],
     "tool_rules[0].max_count_limit"),
    ({"type": "exit_loop"}, "tool_rules"),
])
def test_bad_rules_are_422_naming_the_field_and_nothing_is_stored(server, rules: Any, param: str) -> None:
    base = server.base_url
    name = f"bad-rules-{param}"
    response = httpx.post(base + "/v1/agents/", json={"name": name, "tool_rules": rules}, timeout=10)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"]
    assert error["code"] == ("validation_error" if param == "tool_rules" else "invalid_tool_rule")  # not a list
    assert httpx.get(base + "/v1/agents/", params={"name": name}).json() == []
    agent = create_agent(base, tool_rules=[{"type": "exit_loop", "tool_name": "memory_rethink"}])
    response = httpx.patch(f"{base}/v1/agents/{agent}", json={"tool_rules": rules, "description": "changed"})
    assert response.status_code == 422 and response.json()["error"]["param"] == param
    after = _agent(base, agent)
    assert after["description"] is None
    assert after["tool_rules"] == [{"tool_name": "memory_rethink", "type": "exit_loop", "prompt_template": None}]


def test_rules_are_stored_in_letta_shape_and_follow_the_tools(server) -> None:
    base = server.base_url
    rules = [{"type": "run_first", "tool_name": "conversation_search"},
             {"type": "child", "tool_name": "conversation_search", "children": ["memory_insert"]},
             {"type": "conditional", "tool_name": "memory_insert", "child_output_mapping": {"ok": "memory_replace"}},
             {"type": "max_count_per_step", "tool_name": "memory_replace", "max_count_limit": 2}]
    agent = create_agent(base, tool_rules=rules)
    stored = _agent(base, agent)["tool_rules"]
    assert [r["type"] for r in stored] == ["run_first", "constrain_child_tools", "conditional", "max_count_per_step"]
    assert stored[2] == {"tool_name": "memory_insert", "type": "conditional", "prompt_template": None,
                         "default_child": None, "child_output_mapping": {"ok": "memory_replace"},
                         "require_output_mapping": False}
    # Dropping a tool drops every rule that mentions it; the rest stay.
    tools = [t["name"] for t in _agent(base, agent)["tools"] if t["name"] != "memory_insert"]
    response = httpx.patch(f"{base}/v1/agents/{agent}", json={"tools": tools})
    assert response.status_code == 200, response.text
    assert [r["type"] for r in response.json()["tool_rules"]] == ["run_first", "max_count_per_step"]
    # A rule naming a tool the same request removes is refused.
    response = httpx.patch(f"{base}/v1/agents/{agent}", json={
        "tools": [t for t in tools if t != "memory_replace"], "tool_rules": rules[3:]})
    assert response.status_code == 422 and response.json()["error"]["param"] == "tool_rules[0].tool_name"
    # An empty list clears them.
    assert httpx.patch(f"{base}/v1/agents/{agent}", json={"tool_rules": []}).json()["tool_rules"] == []


def test_approval_is_set_per_agent_and_by_a_tools_default(server) -> None:
    base = server.base_url
    agent = create_agent(base)
    url = f"{base}/v1/agents/{agent}/tools/approval/memory_insert"
    response = httpx.patch(url, json={"requires_approval": True})
    assert response.status_code == 200, response.text
    assert {"tool_name": "memory_insert", "type": "requires_approval", "prompt_template": None} in \
        response.json()["tool_rules"]
    assert httpx.patch(url, json={"requires_approval": False}).json()["tool_rules"] == []
    assert httpx.patch(url + "?requires_approval=true").json()["tool_rules"][0]["type"] == "requires_approval"
    # Letta's Node SDK sends the field as `body_requires_approval` (the Python SDK as `requires_approval`).
    assert httpx.patch(url, json={"body_requires_approval": False}).json()["tool_rules"] == []
    for body, status, param in (({"requires_approval": "yes"}, 422, "requires_approval"), ({}, 422, "requires_approval"),
                                ({"body_requires_approval": "yes"}, 422, "body_requires_approval")):
        response = httpx.patch(f"{base}/v1/agents/{agent}/tools/approval/memory_replace", json=body)
        assert response.status_code == status and response.json()["error"]["param"] == param
    response = httpx.patch(f"{base}/v1/agents/{agent}/tools/approval/not_attached", json={"requires_approval": True})
    assert response.status_code == 404 and response.json()["error"]["param"] == "tool_name"
    missing = httpx.patch(f"{base}/v1/agents/agent-00000000-0000-4000-8000-000000000000/tools/approval/x",
                          json={"requires_approval": True})
    assert missing.status_code == 404

    tool = httpx.post(base + "/v1/tools/", json={"source_code": ECHO, "default_requires_approval": True}).json()
    assert tool["default_requires_approval"] is True
    assert httpx.post(base + "/v1/tools/", json={"source_code": ECHO.replace("echo_rules", "echo_x"),
                                                 "default_requires_approval": "yes"}).status_code == 422
    attached = httpx.patch(f"{base}/v1/agents/{agent}/tools/attach/{tool['id']}").json()
    assert {"tool_name": "echo_rules", "type": "requires_approval", "prompt_template": None} in attached["tool_rules"]
    created = _agent(base, create_agent(base, tools=["echo_rules"]))
    assert {"tool_name": "echo_rules", "type": "requires_approval", "prompt_template": None} in created["tool_rules"]
    detached = httpx.patch(f"{base}/v1/agents/{agent}/tools/detach/{tool['id']}").json()
    assert all(r["tool_name"] != "echo_rules" for r in detached["tool_rules"])
    changed = httpx.patch(f"{base}/v1/tools/{tool['id']}", json={"default_requires_approval": False}).json()
    assert changed["default_requires_approval"] is False
    httpx.delete(f"{base}/v1/tools/{tool['id']}")


def test_setting_approval_on_an_agent_deleted_behind_the_cache_is_404(server) -> None:
    base = server.base_url
    agent = create_agent(base)
    assert httpx.get(f"{base}/v1/agents/{agent}").status_code == 200  # now in this server's cache
    assert server.call(server.rt.store.delete_agent(agent))  # another writer deletes it
    response = httpx.patch(f"{base}/v1/agents/{agent}/tools/approval/memory_insert", json={"requires_approval": True})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found" and agent in response.json()["error"]["message"]
