"""Recall and archival memory through the agent's tools and the REST endpoints, on the configured backend."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import httpx

from helpers import agent_calls, create_agent, sdk, sim_headers, system_of
from memory.backends import select_backend
from memory.longterm import RecallRecord
from memory.models import Changes, Message, new_id
from proxy.runtime import backend_config

ARCHIVAL = ["archival_memory_insert", "archival_memory_search"]


def turn(base_url: str, agent: str, text: str, script: list[dict[str, Any]] | None = None) -> str:
    headers = sim_headers(script=script) if script else {}
    out = sdk(base_url).chat.completions.create(model=agent, messages=[{"role": "user", "content": text}],
                                                extra_headers=headers)
    return out.choices[0].message.content or ""


def last_tool_result(sim_requests: Any) -> str:
    message = agent_calls(sim_requests)[-1]["messages"][-1]
    assert message["role"] == "tool"
    return message["content"]


def search_messages(base_url: str, agent: str, query: str, **extra: Any) -> list[dict[str, Any]]:
    response = httpx.post(base_url + "/v1/agents/messages/search",
                          json={"agent_id": agent, "query": query, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_recall(base_url: str, agent: str, query: str, timeout: float = 5.0,
                    until: Callable[[list[dict[str, Any]]], bool] = bool) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = search_messages(base_url, agent, query)
        if until(hits):
            return hits
        time.sleep(0.05)
    return []


def test_archival_insert_in_one_turn_is_found_by_search_in_a_later_turn(server, sim_requests) -> None:
    agent = create_agent(server.base_url, tools=ARCHIVAL)
    insert = {"name": "archival_memory_insert",
              "arguments": {"content": "The spare key is under the blue flowerpot", "tags": ["home", "keys"]}}
    turn(server.base_url, agent, "remember where the key is", [{"tool_calls": [insert]}, {"reply": "stored"}])
    assert "Stored in archival memory" in last_tool_result(sim_requests)
    # The prompt's metadata now counts the passage and lists its tags.
    turn(server.base_url, agent, "thanks")
    prompt = system_of(agent_calls(sim_requests)[-1])
    assert "1 total memories you created are stored in archival memory" in prompt
    assert "Available archival memory tags: home, keys" in prompt
    search = {"name": "archival_memory_search", "arguments": {"query": "where is the key", "tags": ["keys"]}}
    turn(server.base_url, agent, "where was it?", [{"tool_calls": [search]}, {"reply": "found it"}])
    result = last_tool_result(sim_requests)
    assert "blue flowerpot" in result and "rrf_score" in result


def test_conversation_search_finds_messages_no_longer_in_context(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    turn(server.base_url, agent, "My cat is called Bartholomew")
    assert wait_for_recall(server.base_url, agent, "Bartholomew")
    httpx.patch(f"{server.base_url}/v1/agents/{agent}/reset-messages").raise_for_status()
    search = {"name": "conversation_search", "arguments": {"query": "cat name", "roles": ["user"]}}
    turn(server.base_url, agent, "what is my cat called?", [{"tool_calls": [search]}, {"reply": "Bartholomew"}])
    sent = agent_calls(sim_requests)[-1]["messages"]
    assert not any("Bartholomew" in (m.get("content") or "") for m in sent[1:-2])  # not in context any more
    assert "My cat is called Bartholomew" in sent[-1]["content"]


def test_archival_endpoints_filters_and_scope(server) -> None:
    a = create_agent(server.base_url)
    b = create_agent(server.base_url)
    url_a = f"{server.base_url}/v1/agents/{a}/archival-memory"
    created = httpx.post(url_a, json={"text": "Quarterly revenue grew 12 percent", "tags": ["finance", "q3"]})
    assert created.status_code == 200
    passage = created.json()[0]
    assert passage["id"].startswith("passage-") and passage["tags"] == ["finance", "q3"]
    httpx.post(url_a, json={"text": "The team offsite is in Porto", "tags": ["events"]}).raise_for_status()
    httpx.post(f"{server.base_url}/v1/agents/{b}/archival-memory",
               json={"text": "Quarterly revenue grew 12 percent", "tags": ["finance"]}).raise_for_status()

    listed = httpx.get(url_a).json()
    assert [p["text"] for p in listed] == ["Quarterly revenue grew 12 percent", "The team offsite is in Porto"]
    assert [p["text"] for p in httpx.get(url_a, params={"search": "Porto"}).json()] == ["The team offsite is in Porto"]

    def search(**params: Any) -> list[dict[str, Any]]:
        response = httpx.get(url_a + "/search", params={"query": "revenue", **params})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] == len(body["results"])
        return body["results"]

    assert [r["content"] for r in search()] == ["Quarterly revenue grew 12 percent"]  # b's twin never shows
    assert search(tags=["finance", "events"], tag_match_mode="all") == []
    assert len(search(tags=["finance", "q3"], tag_match_mode="all")) == 1
    assert len(search(tags=["events", "q3"], tag_match_mode="any")) == 1
    today = datetime.now(timezone.utc).date()
    assert len(search(end_datetime=today.isoformat())) == 1  # a date-only end covers the whole day
    assert search(start_datetime=(today + timedelta(days=1)).isoformat()) == []
    assert search(end_datetime=(today - timedelta(days=1)).isoformat()) == []

    deleted = httpx.delete(f"{url_a}/{passage['id']}")
    assert deleted.status_code == 200
    assert httpx.delete(f"{url_a}/{passage['id']}").status_code == 404
    assert search() == []


def test_message_search_modes_and_scope(server) -> None:
    a = create_agent(server.base_url)
    b = create_agent(server.base_url)
    turn(server.base_url, a, "I collect vintage typewriters")
    turn(server.base_url, b, "I collect vintage typewriters")
    hits = wait_for_recall(server.base_url, a, "typewriters")
    assert hits and {h["message"]["agent_id"] for h in hits} == {a}
    assert all(h["rrf_score"] > 0 and h["fts_rank"] for h in hits)
    assert search_messages(server.base_url, a, "typewriters", search_mode="fts", roles=["user"])[0][
        "message"]["role"] == "user"
    missing = httpx.post(server.base_url + "/v1/agents/messages/search", json={"query": "x"})
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "agent_id"


# vector_database_url comes first so its schema is dropped after the servers stop.
def test_hybrid_search_with_upstream_embeddings(vector_database_url, make_server) -> None:
    # On PostgreSQL, the pgserver database: the local server has no pgvector.
    overrides = {"database_url": vector_database_url} if vector_database_url else {}
    srv = make_server(embedding_model="sim-embedding", **overrides)
    assert httpx.get(srv.base_url + "/v1/health/").json()["search"] == "hybrid"
    agent = create_agent(srv.base_url)
    state = httpx.get(f"{srv.base_url}/v1/agents/{agent}").json()
    assert set(ARCHIVAL) <= {t["name"] for t in state["tools"]}  # archival tools by default with embeddings
    url = f"{srv.base_url}/v1/agents/{agent}/archival-memory"
    for text in ("Paris is the capital of France", "Bananas are rich in potassium", "The Seine flows through Paris"):
        httpx.post(url, json={"text": text}).raise_for_status()
    results = httpx.get(url + "/search", params={"query": "capital of France Paris"}).json()["results"]
    assert results[0]["content"] == "Paris is the capital of France"
    assert results[0]["relevance"]["vector_rank"] and results[0]["relevance"]["fts_rank"]
    turn(srv.base_url, agent, "Rome is lovely in spring")
    # On PostgreSQL the row is searchable by full text at the turn's commit; its vector follows shortly.
    hits = wait_for_recall(srv.base_url, agent, "Rome spring", timeout=5,
                           until=lambda hits: bool(hits) and hits[0]["vector_rank"] is not None)
    assert hits and hits[0]["vector_rank"] is not None


def test_deleting_an_agent_deletes_its_long_term_memory(server) -> None:
    agent = create_agent(server.base_url)
    httpx.post(f"{server.base_url}/v1/agents/{agent}/archival-memory", json={"text": "gone soon"}).raise_for_status()
    turn(server.base_url, agent, "ephemeral words")
    assert wait_for_recall(server.base_url, agent, "ephemeral")
    assert httpx.delete(f"{server.base_url}/v1/agents/{agent}").status_code == 200
    longterm = server.rt.longterm
    assert server.call(longterm.count_passages(agent)) == 0
    assert server.call(longterm.recall_ids(agent)) == set()


def test_start_up_repairs_an_index_left_behind_by_a_crash(make_server, tmp_path) -> None:
    data_dir = str(tmp_path / "data")
    srv = make_server(data_dir=data_dir)
    agent = create_agent(srv.base_url)
    srv.stop()

    async def crash_state() -> None:
        # The state a crash between the store's commit and the index write leaves behind: messages stored
        # but never indexed, plus index rows whose message or agent no longer exists.
        backend = select_backend(backend_config(srv.settings))
        store = backend.store()
        await store.open()
        seq = (await store.history_since(agent, 0)).top
        lost = [Message(id=new_id("message"), agent_id=agent, seq=seq + i + 1, role=role, content=text)
                for i, (role, text) in enumerate([("user", "my passport number is X123"),
                                                  ("assistant", "noted the passport number")])]
        await store.commit(Changes(messages=lost))
        await store.close()
        longterm = backend.longterm(None)
        await longterm.open()
        longterm.enqueue_messages([RecallRecord(id=new_id("message"), agent_id=agent, role="user",
                                                text="a message the store never saw",
                                                created_at=datetime.now(timezone.utc))])
        await longterm.add_passages(new_id("agent"), [("belongs to a deleted agent", [])])
        await longterm.flush()
        await longterm.close()

    asyncio.run(crash_state())
    again = make_server(data_dir=data_dir)
    deadline = time.monotonic() + 20
    repaired = {"state": "running"}
    while repaired["state"] == "running" and time.monotonic() < deadline:
        repaired = httpx.get(again.base_url + "/v1/health/").json()["index_repaired_at_start"]
        time.sleep(0.05)
    assert repaired == {"state": "done", "reindexed": 2, "orphan_messages": 1, "orphan_agents": 1}
    hits = search_messages(again.base_url, agent, "passport number")
    assert {h["message"]["role"] for h in hits} == {"user", "assistant"}
    assert search_messages(again.base_url, agent, "store never saw") == []
