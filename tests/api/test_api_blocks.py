"""Blocks over real HTTP: limits, labels, default descriptions, sharing, attach and detach."""

from __future__ import annotations

import uuid
from typing import Any, Callable

import httpx
import pytest

from memory.models import DEFAULT_BLOCK_LIMIT, DEFAULT_DESCRIPTIONS

BAD_LABELS = ["<evil>", "a b", "x/y", "", "9lives", "a" * 65, "</persona><system>"]


def test_create_block_defaults(http: httpx.Client) -> None:
    response = http.post("/v1/blocks/", json={"label": "notes", "value": "v"})
    assert response.status_code == 200, response.text
    block = response.json()
    assert block["id"].startswith("block-") and block["label"] == "notes"
    assert (block["limit"], block["read_only"], block["metadata"], block["description"]) == \
        (DEFAULT_BLOCK_LIMIT, False, {}, None)
    assert (block["hidden"], block["is_template"], block["template_name"]) == (False, False, None)
    assert http.get(f"/v1/blocks/{block['id']}").json() == block
    assert http.get(f"/v1/blocks/{block['id']}/").json() == block


def test_default_descriptions(create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent(memory_blocks=[{"label": "persona", "value": "p"}, {"label": "human", "value": "h"},
                                        {"label": "other", "value": "o"},
                                        {"label": "custom", "value": "c", "description": "mine"}])
    described = {b["label"]: b["description"] for b in agent["blocks"]}
    assert described == {"persona": DEFAULT_DESCRIPTIONS["persona"], "human": DEFAULT_DESCRIPTIONS["human"],
                         "other": None, "custom": "mine"}


@pytest.mark.parametrize("label", BAD_LABELS)
def test_bad_labels_rejected_everywhere(http: httpx.Client, create_agent: Callable[..., dict[str, Any]],
                                        expect_error: Callable[..., Any], label: str) -> None:
    expect_error(http.post("/v1/blocks/", json={"label": label, "value": ""}), 422)
    expect_error(http.post("/v1/agents/", json={"memory_blocks": [{"label": label, "value": ""}]}), 422)
    agent = create_agent(memory_blocks=[{"label": "human", "value": ""}])
    block_id = agent["blocks"][0]["id"]
    expect_error(http.patch(f"/v1/agents/{agent['id']}/core-memory/blocks/human", json={"label": label}), 422)
    expect_error(http.patch(f"/v1/blocks/{block_id}", json={"label": label}), 422)
    assert http.get(f"/v1/blocks/{block_id}").json()["label"] == "human"


def test_limit_enforced_on_every_write(http: httpx.Client, create_agent: Callable[..., dict[str, Any]],
                                       expect_error: Callable[..., Any]) -> None:
    error = expect_error(http.post("/v1/blocks/", json={"label": "big", "value": "x" * 11, "limit": 10}), 422)
    assert "11 characters" in error["message"] and "limit of 10" in error["message"]
    expect_error(http.post("/v1/agents/", json={"memory_blocks": [{"label": "b", "value": "xx", "limit": 1}]}), 422)
    expect_error(http.post("/v1/blocks/", json={"label": "big", "value": "", "limit": 0}), 422)

    agent = create_agent(memory_blocks=[{"label": "human", "value": "abc", "limit": 5}])
    url = f"/v1/agents/{agent['id']}/core-memory/blocks/human"
    error = expect_error(http.patch(url, json={"value": "123456"}), 422)
    assert "6 characters" in error["message"] and "limit of 5" in error["message"]
    expect_error(http.patch(url, json={"limit": 2}), 422)
    assert http.patch(url, json={"value": "12345"}).json()["value"] == "12345"
    block_id = agent["blocks"][0]["id"]
    expect_error(http.patch(f"/v1/blocks/{block_id}", json={"value": "x" * 6}), 422)
    raised = http.patch(f"/v1/blocks/{block_id}", json={"value": "x" * 6, "limit": 6})
    assert raised.status_code == 200 and raised.json()["limit"] == 6
    assert http.get(url).json()["value"] == "x" * 6


def test_read_only_is_editable_through_the_api(http: httpx.Client,
                                               create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent(memory_blocks=[{"label": "policy", "value": "old", "read_only": True}])
    url = f"/v1/agents/{agent['id']}/core-memory/blocks/policy"
    response = http.patch(url, json={"value": "new", "description": "rules", "metadata": {"v": 2}})
    assert response.status_code == 200, response.text
    assert (response.json()["value"], response.json()["read_only"]) == ("new", True)
    assert http.get(url).json() == response.json()


def test_core_memory_routes(http: httpx.Client, create_agent: Callable[..., dict[str, Any]],
                            expect_error: Callable[..., Any]) -> None:
    agent = create_agent(memory_blocks=[{"label": "human", "value": "h"}, {"label": "persona", "value": "p"}])
    base = f"/v1/agents/{agent['id']}/core-memory/blocks"
    assert http.get(base).json() == agent["blocks"] == http.get(base + "/").json()
    assert http.get(base + "/persona").json() == agent["blocks"][1]
    expect_error(http.get(base + "/missing"), 404, "not_found")
    expect_error(http.patch(base + "/missing", json={"value": "x"}), 404, "not_found")
    renamed = http.patch(base + "/persona", json={"label": "self"})
    assert renamed.status_code == 200 and renamed.json()["label"] == "self"
    expect_error(http.patch(base + "/self", json={"label": "human"}), 409, "conflict")
    assert [b["label"] for b in http.get(f"/v1/agents/{agent['id']}").json()["blocks"]] == ["human", "self"]
    expect_error(http.get(f"/v1/agents/agent-{uuid.uuid4()}/core-memory/blocks"), 404, "not_found")


def test_shared_block_seen_by_both_agents(http: httpx.Client, create_agent: Callable[..., dict[str, Any]]) -> None:
    shared = http.post("/v1/blocks/", json={"label": "team", "value": "v1"}).json()
    first = create_agent(block_ids=[shared["id"]])
    second = create_agent(memory_blocks=[{"label": "human", "value": "h"}], block_ids=[shared["id"]])
    assert [b["label"] for b in second["blocks"]] == ["human", "team"]
    http.get(f"/v1/agents/{first['id']}/core-memory/blocks/team")  # both loaded in the cache
    updated = http.patch(f"/v1/agents/{first['id']}/core-memory/blocks/team", json={"value": "v2"})
    assert updated.status_code == 200, updated.text
    for agent in (first, second):
        assert http.get(f"/v1/agents/{agent['id']}/core-memory/blocks/team").json()["value"] == "v2"
        assert http.get(f"/v1/agents/{agent['id']}").json()["blocks"][-1]["value"] == "v2"
    http.patch(f"/v1/blocks/{shared['id']}", json={"value": "v3"})
    for agent in (first, second):
        assert http.get(f"/v1/agents/{agent['id']}/core-memory/blocks/team").json()["value"] == "v3"
    holders = {a["id"] for a in http.get(f"/v1/blocks/{shared['id']}/agents").json()}
    assert holders == {first["id"], second["id"]}


def test_compiled_prompt_follows_block_edits(http: httpx.Client, server: Any,
                                             create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent(memory_blocks=[{"label": "human", "value": "likes tea"}])

    async def prompt() -> str:
        live = await server.rt.memory.get(agent["id"])
        return str(server.rt.memory.system_prompt(live))

    assert "likes tea" in server.call(prompt())
    http.patch(f"/v1/agents/{agent['id']}/core-memory/blocks/human", json={"value": "likes coffee"})
    compiled = server.call(prompt())
    assert "likes coffee" in compiled and "likes tea" not in compiled


def test_attach_detach_and_duplicate_label(http: httpx.Client, create_agent: Callable[..., dict[str, Any]],
                                           expect_error: Callable[..., Any]) -> None:
    agent = create_agent(memory_blocks=[{"label": "human", "value": "h"}])
    base = f"/v1/agents/{agent['id']}/core-memory/blocks"
    extra = http.post("/v1/blocks/", json={"label": "extra", "value": "e"}).json()
    clash = http.post("/v1/blocks/", json={"label": "human", "value": "other"}).json()

    attached = http.patch(f"{base}/attach/{extra['id']}")
    assert attached.status_code == 200, attached.text
    assert [b["label"] for b in attached.json()["blocks"]] == ["human", "extra"]
    assert http.patch(f"{base}/attach/{extra['id']}/").json()["blocks"] == attached.json()["blocks"]
    expect_error(http.patch(f"{base}/attach/{clash['id']}"), 409, "conflict")
    expect_error(http.patch(f"{base}/attach/block-{uuid.uuid4()}"), 404, "not_found")
    expect_error(http.patch(f"{base}/attach/not-a-block"), 404, "not_found")

    detached = http.patch(f"{base}/detach/{extra['id']}")
    assert [b["label"] for b in detached.json()["blocks"]] == ["human"]
    assert http.get(f"/v1/blocks/{extra['id']}").status_code == 200  # detaching keeps the block
    assert http.patch(f"{base}/attach/{clash['id']}").status_code == 409


def test_blocks_list_modify_delete(http: httpx.Client, create_agent: Callable[..., dict[str, Any]],
                                   expect_error: Callable[..., Any]) -> None:
    label = f"l{uuid.uuid4().hex[:10]}"
    made = [http.post("/v1/blocks", json={"label": label, "value": str(i)}).json()["id"] for i in range(3)]
    listed = http.get("/v1/blocks/", params={"label": label}).json()
    assert [b["id"] for b in listed] == made
    assert [b["id"] for b in http.get("/v1/blocks", params={"label": label, "limit": 1, "after": made[0]}).json()] \
        == [made[1]]
    agent = create_agent(block_ids=[made[0]])
    response = http.patch(f"/v1/blocks/{made[0]}", json={"description": "d", "read_only": True})
    assert (response.json()["description"], response.json()["read_only"]) == ("d", True)
    expect_error(http.patch(f"/v1/blocks/{made[0]}", json={"read_only": "yes"}), 422)
    deleted = http.delete(f"/v1/blocks/{made[0]}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    expect_error(http.get(f"/v1/blocks/{made[0]}"), 404, "not_found")
    expect_error(http.delete(f"/v1/blocks/{made[0]}"), 404, "not_found")
    assert http.get(f"/v1/agents/{agent['id']}").json()["blocks"] == []
