"""PostgreSQL going away under a serving memproxy (a real TCP relay between them, cut and restored mid-serve)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from replicas import Fleet
from helpers import agent_calls, create_agent, free_port, sim_headers, system_of


class Relay:
    """A TCP relay on its own event loop thread: `cut()` resets every connection and refuses new ones (the
    database is gone), `cut(silent=True)` resets them and then accepts new ones without ever answering (a
    host that no longer answers); `restore()` relays again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.base_events.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()
        self.silent = False
        self.thread.start()
        self.restore()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.silent:
            self.pipes.add(writer)
            await reader.read()  # holds the connection, answering nothing, until the client gives up
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.pipes.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self.pipes.difference_update((writer, up_writer))

    def restore(self) -> None:
        async def listen() -> None:
            self.silent = False
            if self.server is None or not self.server.is_serving():
                self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)
        self._call(listen())

    def cut(self, *, silent: bool = False) -> None:
        async def close() -> None:
            assert self.server is not None
            self.silent = silent
            if not silent:
                self.server.close()
            for writer in list(self.pipes):
                writer.transport.abort()  # a reset, as a database host that went away
            self.pipes.clear()
            if not silent:
                await self.server.wait_closed()
        self._call(close())

    def stop(self) -> None:
        if self.server is not None and self.server.is_serving():
            self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def relayed(make_fleet: Callable[[], Fleet]) -> Iterator[tuple[Fleet, Relay]]:
    fleet = make_fleet()
    parts = urlsplit(fleet.database_url)
    relay = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{relay.port}")
    fleet.env["MEMPROXY_DATABASE_URL"] = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
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
        relayed: tuple[Fleet, Relay], sim_requests: Any) -> None:
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
        relayed: tuple[Fleet, Relay]) -> None:
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
        relayed: tuple[Fleet, Relay], sim_requests: Any) -> None:
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
