"""Agents over real HTTP: create, retrieve, list (filters, cursors), modify, delete."""

from __future__ import annotations

import re
import uuid
from typing import Any, Callable

import httpx

from proxy.api.agents import DEFAULT_SYSTEM
from tools.registry import BASE_TOOLS

AGENT_ID = re.compile(r"^agent-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
REQUIRED_AGENT_FIELDS = {"id", "name", "system", "agent_type", "llm_config", "embedding_config", "memory",
                         "blocks", "tools", "sources", "tags"}


def test_create_with_defaults(create_agent: Callable[..., dict[str, Any]], server: Any) -> None:
    agent = create_agent()
    assert AGENT_ID.match(agent["id"])
    assert REQUIRED_AGENT_FIELDS <= set(agent)
    assert agent["agent_type"] == "letta_v1_agent"
    assert agent["name"].startswith("agent-")
    assert agent["system"] == DEFAULT_SYSTEM
    assert agent["llm_config"]["model"] == server.settings.default_model
    assert agent["llm_config"]["model_endpoint_type"] == "openai"
    assert agent["llm_config"]["context_window"] > 0
    assert agent["embedding_config"]["embedding_endpoint_type"] == "openai"
    assert isinstance(agent["embedding_config"]["embedding_model"], str)
    assert isinstance(agent["embedding_config"]["embedding_dim"], int)
    assert agent["embedding"] is None
    assert [t["name"] for t in agent["tools"]] == list(BASE_TOOLS)
    assert all(t["id"].startswith("tool-") and t["json_schema"]["name"] == t["name"] for t in agent["tools"])
    assert agent["blocks"] == [] and agent["memory"]["blocks"] == []
    assert agent["message_ids"] == [] and agent["tags"] == [] and agent["metadata"] == {}
    assert agent["created_at"].endswith("+00:00") and agent["timezone"] == "UTC"


def test_create_with_everything(create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent(
        name="everything", system="Be brief.", description="a test agent", model="openai/gpt-4o",
        embedding="text-embedding-3-small", tools=["archival_memory_search"], include_base_tools=False,
        tags=["red", "blue"], metadata={"owner": "t"}, context_window_limit=9000, message_buffer_autoclear=True,
        temperature=0.2, max_tokens=256, top_p=0.9,
        memory_blocks=[{"label": "persona", "value": "I am terse.", "limit": 100},
                       {"label": "notes", "value": "", "description": "scratch", "read_only": True,
                        "metadata": {"k": 1}}],
        unknown_field={"ignored": True},
    )
    assert (agent["name"], agent["system"], agent["description"]) == ("everything", "Be brief.", "a test agent")
    assert agent["llm_config"]["model"] == "openai/gpt-4o"
    assert agent["llm_config"]["handle"] == "openai/gpt-4o"
    assert agent["llm_config"]["context_window"] == 9000
    assert (agent["llm_config"]["temperature"], agent["llm_config"]["max_tokens"]) == (0.2, 256)
    assert agent["embedding_config"]["embedding_model"] == "text-embedding-3-small"
    assert [t["name"] for t in agent["tools"]] == ["archival_memory_search"]
    assert agent["tags"] == ["red", "blue"] and agent["metadata"] == {"owner": "t"}
    assert agent["message_buffer_autoclear"] is True
    persona, notes = agent["blocks"]
    assert (persona["label"], persona["value"], persona["limit"]) == ("persona", "I am terse.", 100)
    assert persona["id"].startswith("block-")
    assert (notes["description"], notes["read_only"], notes["metadata"]) == ("scratch", True, {"k": 1})
    assert agent["memory"]["blocks"] == agent["blocks"]


def test_llm_config_object_is_accepted(create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent(llm_config={"model": "gpt-4.1", "context_window": 5000, "temperature": 0.1,
                                     "max_tokens": 77, "model_endpoint_type": "openai"})
    assert agent["llm_config"]["model"] == "gpt-4.1"
    assert agent["llm_config"]["context_window"] == 5000
    assert (agent["llm_config"]["temperature"], agent["llm_config"]["max_tokens"]) == (0.1, 77)


def test_retrieve_and_trailing_slash(http: httpx.Client, create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent(name="slashes")
    assert http.get(f"/v1/agents/{agent['id']}").json() == agent
    assert http.get(f"/v1/agents/{agent['id']}/").json() == agent
    assert http.post("/v1/agents", json={"name": "no-slash"}).status_code == 200


def test_create_validation(http: httpx.Client, expect_error: Callable[..., Any]) -> None:
    bad_bodies = [
        {"name": 5}, {"tags": "red"}, {"tags": [1]}, {"metadata": []}, {"include_base_tools": "yes"},
        {"context_window_limit": "big"}, {"context_window_limit": True}, {"temperature": "hot"},
        {"memory_blocks": {"label": "x"}}, {"memory_blocks": [{"value": "no label"}]},
        {"memory_blocks": [{"label": "a", "value": "x"}, {"label": "a", "value": "y"}]},
        {"tools": ["bad name!"]}, {"name": ""},
    ]
    for body in bad_bodies:
        expect_error(http.post("/v1/agents/", json=body), 422)
    expect_error(http.post("/v1/agents/", json={"block_ids": [f"block-{uuid.uuid4()}"]}), 404, "not_found")


def test_modify_is_partial(http: httpx.Client, create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent(name="before", tags=["a"], temperature=0.5, memory_blocks=[{"label": "human", "value": "x"}])
    response = http.patch(f"/v1/agents/{agent['id']}", json={"name": "after", "max_tokens": 99, "tags": ["b"]})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["name"], changed["tags"]) == ("after", ["b"])
    assert (changed["llm_config"]["temperature"], changed["llm_config"]["max_tokens"]) == (0.5, 99)
    assert changed["system"] == agent["system"] and changed["blocks"] == agent["blocks"]
    assert changed["updated_at"] >= agent["updated_at"]
    assert http.get(f"/v1/agents/{agent['id']}").json() == changed


def test_modify_tools_and_blocks(http: httpx.Client, create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent(memory_blocks=[{"label": "human", "value": "x"}])
    ids = {t["name"]: t["id"] for t in agent["tools"]}
    response = http.patch(f"/v1/agents/{agent['id']}", json={"tool_ids": [ids["memory_insert"]]})
    assert [t["name"] for t in response.json()["tools"]] == ["memory_insert"]
    response = http.patch(f"/v1/agents/{agent['id']}", json={"tools": ["conversation_search"]})
    assert [t["name"] for t in response.json()["tools"]] == ["conversation_search"]
    assert http.patch(f"/v1/agents/{agent['id']}", json={"tool_ids": [f"tool-{uuid.uuid4()}"]}).status_code == 400

    first = http.post("/v1/blocks/", json={"label": "persona", "value": "p"}).json()
    second = http.post("/v1/blocks/", json={"label": "persona", "value": "q"}).json()
    response = http.patch(f"/v1/agents/{agent['id']}", json={"block_ids": [first["id"]]})
    assert [b["id"] for b in response.json()["blocks"]] == [first["id"]]
    assert http.patch(f"/v1/agents/{agent['id']}",
                      json={"block_ids": [first["id"], second["id"]]}).status_code == 409


def test_delete(http: httpx.Client, create_agent: Callable[..., dict[str, Any]],
                expect_error: Callable[..., Any]) -> None:
    agent = create_agent()
    response = http.delete(f"/v1/agents/{agent['id']}")
    assert response.status_code == 200 and response.json()["deleted"] is True
    expect_error(http.get(f"/v1/agents/{agent['id']}"), 404, "not_found")
    expect_error(http.delete(f"/v1/agents/{agent['id']}"), 404, "not_found")
    for bad in ("agent-nope", "block-" + str(uuid.uuid4()), "x" * 300):
        expect_error(http.get(f"/v1/agents/{bad}"), 404, "not_found")


def test_list_filters(http: httpx.Client, create_agent: Callable[..., dict[str, Any]]) -> None:
    mark = uuid.uuid4().hex[:8]
    both = create_agent(name=f"f-{mark}", tags=[f"x{mark}", f"y{mark}"])
    only_x = create_agent(name=f"f-{mark}", tags=[f"x{mark}"])
    create_agent(name=f"g-{mark}", tags=[f"z{mark}"])

    def ids(params: Any) -> set[str]:
        response = http.get("/v1/agents/", params=params)
        assert response.status_code == 200, response.text
        return {a["id"] for a in response.json()}

    assert ids({"name": f"f-{mark}"}) == {both["id"], only_x["id"]}
    assert ids([("tags", f"x{mark}"), ("tags", f"y{mark}")]) == {both["id"], only_x["id"]}
    assert ids([("tags", f"x{mark}"), ("tags", f"y{mark}"), ("match_all_tags", "true")]) == {both["id"]}
    assert ids({"tags": f"nothing{mark}"}) == set()


def test_list_pagination_both_orders(make_server: Callable[..., Any]) -> None:
    server = make_server()
    with httpx.Client(base_url=server.base_url) as http:
        made = [http.post("/v1/agents/", json={"name": f"p{i}"}).json()["id"] for i in range(5)]

        def page(**params: Any) -> list[str]:
            response = http.get("/v1/agents", params=params)
            assert response.status_code == 200, response.text
            return [a["id"] for a in response.json()]

        assert page(order="asc") == made
        assert page() == made[::-1]  # Letta's default order is newest first
        assert page(order="asc", limit=2) == made[:2]
        assert page(order="asc", limit=2, after=made[1]) == made[2:4]
        assert page(order="asc", before=made[3]) == made[:3]
        assert page(order="desc", limit=2) == made[4:2:-1]
        assert page(order="desc", limit=2, after=made[3]) == [made[2], made[1]]
        assert page(order="desc", before=made[1]) == made[4:1:-1]
        # A `before` page holds the items nearest the cursor, so paging back meets every item.
        assert page(order="asc", before=made[3], limit=2) == made[1:3]
        assert page(order="desc", before=made[1], limit=2) == [made[3], made[2]]
        assert page(ascending="true", limit=1) == made[:1]
        assert http.get("/v1/agents", params={"order": "sideways"}).status_code == 422
        assert http.get("/v1/agents", params={"limit": "x"}).status_code == 422
        assert http.get("/v1/agents", params={"after": "not-an-id"}).status_code == 422
