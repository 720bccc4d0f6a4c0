"""The API as a whole: health, models, error shapes, auth, body limits, and surviving a restart."""

from __future__ import annotations

from typing import Any, Callable

import httpx

from memory.models import Changes
from proxy import __version__


def test_health(http: httpx.Client) -> None:
    for path in ("/v1/health/", "/v1/health"):
        response = http.get(path)
        assert response.status_code == 200
        body = response.json()
        assert (body["version"], body["status"]) == (__version__, "ok")
        assert body["search"] == "full-text"  # no embedding model configured for this server
        assert body["index_repaired_at_start"]["state"] in ("running", "done")


def test_models_lists_agents_then_upstream(http: httpx.Client, create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent()
    response = http.get("/v1/models")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert agent["id"] in ids
    assert {"sim-small", "sim-large"} <= set(ids)
    assert max(i for i, m in enumerate(ids) if m.startswith("agent-")) < ids.index("sim-small")
    mine = next(m for m in body["data"] if m["id"] == agent["id"])
    assert mine["object"] == "model" and mine["owned_by"] == "memproxy" and isinstance(mine["created"], int)
    # Letta's SDK asks with a trailing slash and gets Letta's shape: the upstream models agents can use.
    letta = http.get("/v1/models/").json()
    assert [m["model"] for m in letta] == ["sim-small", "sim-large"] and letta[0]["handle"] == "openai/sim-small"


def test_models_without_a_reachable_upstream(make_server: Callable[..., Any]) -> None:
    server = make_server(upstream_url="http://127.0.0.1:9/v1")
    with httpx.Client(base_url=server.base_url) as http:
        agent = http.post("/v1/agents/", json={}).json()
        response = http.get("/v1/models")
        assert response.status_code == 200, response.text
        assert [m["id"] for m in response.json()["data"]] == [agent["id"]]


def test_error_shapes(http: httpx.Client, create_agent: Callable[..., dict[str, Any]],
                      expect_error: Callable[..., Any]) -> None:
    agent = create_agent(memory_blocks=[{"label": "human", "value": "h"}])
    clash = http.post("/v1/blocks/", json={"label": "human", "value": "x"}).json()
    raw = {"content": b'{"name": ', "headers": {"content-type": "application/json"}}
    expect_error(http.post("/v1/agents/", **raw), 400, "invalid_json")  # type: ignore[arg-type]
    expect_error(http.post("/v1/blocks/", content=b"[1, 2]"), 400, "invalid_json")
    expect_error(http.patch(f"/v1/agents/{agent['id']}", content=b"not json"), 400, "invalid_json")
    expect_error(http.get("/v1/agents/agent-missing"), 404, "not_found")
    expect_error(http.get("/v1/no/such/route"), 404)
    expect_error(http.put(f"/v1/agents/{agent['id']}", json={}), 405)
    expect_error(http.patch(f"/v1/agents/{agent['id']}/core-memory/blocks/attach/{clash['id']}"), 409, "conflict")
    expect_error(http.post("/v1/blocks/", json={"label": "a b", "value": ""}), 422)
    error = expect_error(http.post("/v1/blocks/", json={"label": "ok", "value": 7}), 422)
    assert error["param"] == "value" and error["type"] == "invalid_request_error"


def test_body_limit(make_server: Callable[..., Any], expect_error: Callable[..., Any]) -> None:
    server = make_server(max_body_bytes=1000)
    with httpx.Client(base_url=server.base_url) as http:
        expect_error(http.post("/v1/blocks/", json={"label": "big", "value": "x" * 2000}), 413)
        assert http.post("/v1/blocks/", json={"label": "small", "value": "x" * 100}).status_code == 200


def test_auth(make_server: Callable[..., Any], expect_error: Callable[..., Any]) -> None:
    server = make_server(api_keys=("k1", "k2"))
    with httpx.Client(base_url=server.base_url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic k1"}):
            response = http.get("/v1/agents/", headers=headers)
            expect_error(response, 401, "invalid_api_key")
            assert response.headers["www-authenticate"] == "Bearer"
        expect_error(http.post("/v1/agents/", json={}), 401)
        assert http.get("/v1/health/").status_code == 200
        for key in ("k1", "k2"):
            auth = {"Authorization": f"Bearer {key}"}
            created = http.post("/v1/agents/", json={}, headers=auth)
            assert created.status_code == 200, created.text
            assert http.get(f"/v1/agents/{created.json()['id']}", headers=auth).status_code == 200


def test_no_auth_when_no_keys(http: httpx.Client) -> None:
    assert http.get("/v1/agents/", headers={"Authorization": "Bearer anything"}).status_code == 200
    assert http.get("/v1/agents/").status_code == 200


def test_restart_returns_identical_json(make_server: Callable[..., Any], tmp_path: Any) -> None:
    data_dir = str(tmp_path / "data")
    first = make_server(data_dir=data_dir)
    with httpx.Client(base_url=first.base_url) as http:
        shared = http.post("/v1/blocks/", json={"label": "team", "value": "shared", "metadata": {"n": 1}}).json()
        made = [http.post("/v1/agents/", json={
            "name": f"r{i}", "tags": ["t"], "metadata": {"i": i}, "temperature": 0.3, "block_ids": [shared["id"]],
            "memory_blocks": [{"label": "persona", "value": f"p{i}"}, {"label": "human", "value": "h", "limit": 50,
                                                                        "read_only": True}],
        }).json() for i in range(2)]
        http.patch(f"/v1/agents/{made[0]['id']}/core-memory/blocks/persona", json={"value": "edited"})
        http.patch(f"/v1/agents/{made[1]['id']}", json={"description": "changed", "tools": ["conversation_search"]})
        first.call(seed_history(first, made[0]["id"]))
        paths = ["/v1/agents/?order=asc", "/v1/blocks/", f"/v1/blocks/{shared['id']}",
                 *(f"/v1/agents/{a['id']}" for a in made),
                 *(f"/v1/agents/{a['id']}/core-memory/blocks" for a in made),
                 f"/v1/agents/{made[0]['id']}/messages"]
        before = {path: http.get(path).json() for path in paths}
    first.stop()
    second = make_server(data_dir=data_dir)
    with httpx.Client(base_url=second.base_url) as http:
        after = {path: http.get(path).json() for path in paths}
    assert after == before
    assert before[f"/v1/agents/{made[0]['id']}"]["blocks"][0]["value"] == "edited"
    assert len(before[f"/v1/agents/{made[0]['id']}"]["message_ids"]) == 3


async def seed_history(server: Any, agent_id: str) -> None:
    memory = server.rt.memory
    live = await memory.get(agent_id)
    call = {"id": "call_9", "type": "function", "function": {"name": "memory_insert", "arguments": "{}"}}
    made = [memory.new_message(live, "user", "remember this"),
            memory.new_message(live, "assistant", None, tool_calls=[call]),
            memory.new_message(live, "tool", "done", tool_call_id="call_9")]
    await memory.commit(Changes(messages=made))
