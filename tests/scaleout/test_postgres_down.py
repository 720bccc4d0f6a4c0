"""PostgreSQL going away under a serving memproxy (a real TCP relay between them, cut and restored mid-serve)."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

import httpx
import pytest

from bench.netdelay import NetDelay, towards
from replicas import Fleet
from helpers import agent_calls, create_agent, sim_headers, system_of


@pytest.fixture
def relayed(make_fleet: Callable[[], Fleet]) -> Iterator[tuple[Fleet, NetDelay]]:
    fleet = make_fleet()
    relay = towards(fleet.database_url, 0)  # a plain relay, cut and restored by the tests
    fleet.env["MEMPROXY_DATABASE_URL"] = relay.url(fleet.database_url)
    try:
        yield fleet, relay
    finally:
        fleet.stop()
        relay.stop()


def ask(base_url: str, agent: str, text: str, **kw: Any) -> httpx.Response:
    return httpx.post(base_url + "/v1/chat/completions", timeout=30, headers=sim_headers(reply=f"re: {text}"),
                      json={"model": agent, "messages": [{"role": "user", "content": text}], **kw})


def unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "database_unavailable" and error["type"] == "server_error"
    assert "PostgreSQL" in error["message"] and "password" not in error["message"]
    assert response.headers["retry-after"] == "1"


def test_postgres_cut_mid_serve_fails_fast_with_503_loses_nothing_and_recovers(
        relayed: tuple[Fleet, NetDelay], sim_requests: Any) -> None:
    fleet, relay = relayed
    replica = fleet.replica()
    base = replica.base_url
    agent, streamer, quiet = create_agent(base), create_agent(base), create_agent(base)
    assert httpx.get(f"{base}/v1/agents/{quiet}", timeout=30).status_code == 200  # cached: only its archive is asked
    assert ask(base, agent, "one").status_code == 200
    assert ask(base, streamer, "one").status_code == 200  # both cached: their next turns fail at the commit

    relay.cut()
    unavailable(ask(base, agent, "two"))
    streamed = ask(base, streamer, "two", stream=True)
    assert streamed.status_code == 200  # the stream was open before the commit failed: an error event, no finish
    payloads = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]" and json.loads(payloads[-2])["error"]["code"] == "database_unavailable"
    assert all(choice.get("finish_reason") is None for p in payloads[:-2] for choice in json.loads(p)["choices"])
    unavailable(ask(base, streamer, "three", stream=True))  # not cached any more: refused before the stream opens
    unavailable(httpx.patch(f"{base}/v1/agents/{agent}/core-memory/blocks/human", json={"value": "Name: Lost"},
                            timeout=30))
    unavailable(httpx.post(f"{base}/v1/agents/", json={"name": "new"}, timeout=30))
    unavailable(httpx.post(f"{base}/v1/tools/", json={"source_code": "def ping() -> str:\n    return 'pong'\n"},
                           timeout=30))
    unavailable(httpx.get(f"{base}/v1/agents/{agent}/messages", timeout=30))
    unavailable(httpx.post(f"{base}/v1/agents/{quiet}/archival-memory", json={"text": "Lost fact."}, timeout=30))
    unavailable(httpx.get(f"{base}/v1/agents/{quiet}/archival-memory/search", params={"query": "fact"}, timeout=30))

    relay.restore()  # the same memproxy, not restarted
    assert ask(base, agent, "three").status_code == 200
    prompt = system_of(agent_calls(sim_requests)[-1])
    assert "Name: Ada" in prompt and "Name: Lost" not in prompt  # the refused edit was not kept in the cache
    rows = fleet.query("SELECT role, content, run_id FROM messages WHERE agent_id = $1 ORDER BY seq", agent)
    assert [(r["role"], r["content"]) for r in rows] == [("user", "one"), ("assistant", "re: one"),
                                                         ("user", "three"), ("assistant", "re: three")]
    assert all(r["run_id"] for r in rows)
    assert fleet.query("SELECT count(*) AS n FROM agents")[0]["n"] == 3
    assert [r["content"] for r in fleet.query("SELECT content FROM messages WHERE agent_id = $1 AND role = 'user'",
                                             streamer)] == ["one"]
    assert fleet.query("SELECT count(*) AS n FROM runs")[0]["n"] == 3  # the acknowledged turns' runs only
    assert fleet.query("SELECT count(*) AS n FROM tools")[0]["n"] == 0
    assert fleet.query("SELECT count(*) AS n FROM passages")[0]["n"] == 0
    edited = httpx.patch(f"{base}/v1/agents/{agent}/core-memory/blocks/human", json={"value": "Name: Back"},
                         timeout=30)
    assert edited.status_code == 200
    assert ask(base, agent, "four").status_code == 200
    assert "Name: Back" in system_of(agent_calls(sim_requests)[-1])


def test_a_database_that_stops_answering_fails_calls_within_the_connect_timeout(
        relayed: tuple[Fleet, NetDelay]) -> None:
    fleet, relay = relayed
    base = fleet.replica().base_url
    cached, other = create_agent(base), create_agent(base)
    assert ask(base, cached, "one").status_code == 200
    relay.cut(silent=True)  # new connections are accepted and never answered: asyncpg's 60 s default would hang
    unavailable(ask(base, cached, "two"))  # the commit's connection times out (5 s)
    unavailable(httpx.get(f"{base}/v1/agents/{other}/messages", timeout=30))
    relay.restore()
    assert ask(base, cached, "three").status_code == 200
    users = fleet.query("SELECT content FROM messages WHERE agent_id = $1 AND role = 'user' ORDER BY seq", cached)
    assert [r["content"] for r in users] == ["one", "three"]


def test_a_stale_copy_whose_refresh_meets_a_cut_database_is_refused_then_read_whole(
        relayed: tuple[Fleet, NetDelay], sim_requests: Any) -> None:
    fleet, relay = relayed
    here, there = (replica.base_url for replica in fleet.start(2))
    agent = create_agent(here)
    assert ask(here, agent, "one").status_code == 200
    assert ask(there, agent, "two").status_code == 200  # `here`'s copy is stale now: bringing it up to date reads
    relay.cut()
    unavailable(ask(here, agent, "three"))
    relay.restore()
    assert ask(here, agent, "four").status_code == 200
    call = agent_calls(sim_requests)[-1]
    assert [(m["role"], m["content"]) for m in call["messages"][1:]] == [
        ("user", "one"), ("assistant", "re: one"), ("user", "two"), ("assistant", "re: two"), ("user", "four")]
    users = fleet.query("SELECT content FROM messages WHERE agent_id = $1 AND role = 'user' ORDER BY seq", agent)
    assert [r["content"] for r in users] == ["one", "two", "four"]
