"""SIGKILL memproxy at the moments that matter, restart it on the same data dir, and check nothing
acknowledged was lost, no turn is half-written, and the agent still answers (definitions: crash_ledger.py).

Kill points: right after a turn was acknowledged (`[DONE]` or the 200), mid-stream, right after a server
memory tool's result went back to the model, right after a management write answered 2xx.

Under MEMPROXY_TEST_BACKEND=postgres (`make test-postgres`) every server runs on a PostgreSQL schema of its
own, with about half the kills (23): the same definitions hold, an acknowledged turn must also be in the
recall table the moment the process dies (written in the turn's transaction) and found by a recall search
right after the restart, and start-up reconciliation must find nothing to repair.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import asyncpg
import httpx
import pg
from helpers import ON_POSTGRES

from crash_harness import SEED, TALLIES, Server, Tally, Tripwire
from crash_ledger import Findings, Ledger

AGENT = {"name": "crash", "system": "You are a crash-test agent.",
         "memory_blocks": [{"label": "human", "value": "Name: Ada", "limit": 100000},
                           {"label": "persona", "value": "I am helpful.", "limit": 10000}]}


def _kills(n: int) -> int:
    """The PostgreSQL pass reruns the suite with half the kills of each kill point (23 in all with the MCP point's 2)."""
    return n // 2 if ON_POSTGRES else n


def _sim(**options: Any) -> dict[str, str]:
    return {"X-Sim-" + k.replace("_", "-"): v if isinstance(v, str) else json.dumps(v) for k, v in options.items()}


def _completion(http: httpx.Client, agent: str, text: str, headers: dict[str, str]) -> str:
    """A `stream: false` turn; returns the reply once the 200 is in."""
    response = http.post("/v1/chat/completions", headers=headers,
                         json={"model": agent, "messages": [{"role": "user", "content": text}]})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def _stream(http: httpx.Client, agent: str, text: str, headers: dict[str, str],
            on_content: Callable[[int], bool] | None = None) -> str | None:
    """A streamed turn; returns the reply at `data: [DONE]`, or None when `on_content(n)` said stop."""
    body = {"model": agent, "messages": [{"role": "user", "content": text}], "stream": True}
    parts: list[str] = []
    with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line == "data: [DONE]":
                return "".join(parts)
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            assert "error" not in chunk, chunk
            for choice in chunk["choices"]:
                if choice["delta"].get("content"):
                    parts.append(choice["delta"]["content"])
                    if on_content is not None and on_content(len(parts)):
                        return None
    raise AssertionError("the stream ended without [DONE]")


class Series:
    """One kill point: a data dir, its agents and ledger, and repeated kill/restart cycles."""

    def __init__(self, server: Server, agents: int, rng: random.Random) -> None:
        self.server = server
        self.rng = rng
        self.ledger = Ledger()
        self.findings = Findings()
        self.tally = Tally()
        self.http: httpx.Client | None = None
        self.shared_block = ""
        self.agents: list[str] = []
        self.recall_due: list[tuple[str, str]] = []  # (agent, text) a recall search must find after the restart
        self._boot()
        self.agents = [self._ok(self.client.post("/v1/agents", json=AGENT))["id"] for _ in range(agents)]
        self.pool = ThreadPoolExecutor(max(2, agents))

    @property
    def client(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    def nonce(self) -> str:
        return uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]

    def _boot(self) -> None:
        self.tally.starts.append(self.server.start())
        self.http = httpx.Client(base_url=self.server.base_url, timeout=20)

    def _ok(self, response: httpx.Response) -> Any:
        assert response.is_success, f"{response.status_code} {response.text[:300]}\n{self.server.log_tail()}"
        return response.json()

    def restart_and_check(self) -> None:
        """Restart on the same data dir; check the ledger; the agents must answer a next turn."""
        self._boot()
        found = self.ledger.verify(self.client)
        self.findings.extend(found)
        self.tally.turns_lost += len(found.turns_lost)
        self.tally.edits_lost += len(found.edits_lost)
        self.tally.half_turns += len(found.half_turns)
        for agent, text in self.recall_due:
            # At once: the restarted server's background reconciliation has had no part in it.
            hits = self._ok(self.client.post("/v1/agents/messages/search",
                                             json={"agent_id": agent, "query": text, "search_mode": "fts"}))
            assert text in [h["embedded_text"] for h in hits], f"{text!r} not found by recall after the restart"
        self.recall_due = []
        if self.server.database_url:
            # Nothing for start-up reconciliation to repair: every index row came with its messages' commit.
            repaired = self._index_repaired()
            assert repaired == {"state": "done", "reindexed": 0, "orphan_messages": 0, "orphan_agents": 0}, repaired
        for agent in self.agents:
            nonce = self.nonce()
            reply = _completion(self.client, agent, f"check {nonce}", _sim(reply=f"alive {nonce}"))
            assert reply == f"alive {nonce}", reply
            self.acked_turn(agent, f"check {nonce}", reply)

    def _index_repaired(self) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while True:
            repaired = self._ok(self.client.get("/v1/health/"))["index_repaired_at_start"]
            if repaired.get("state") != "running" or time.monotonic() > deadline:
                return dict(repaired)
            time.sleep(0.02)

    def acked_turn(self, agent: str, text: str, reply: str) -> None:
        self.ledger.turn(agent, text, reply, acked=True)
        self.tally.acked_turns += 1

    def acked_edit(self, agent: str, label: str, needle: str, *, replaces: bool = False) -> None:
        self.ledger.edit(agent, label, needle, replaces=replaces)
        self.tally.acked_edits += 1

    def acked_write(self, target: str, what: str, check: Callable[[httpx.Client], bool]) -> None:
        self.ledger.write(target, what, check)
        self.tally.acked_edits += 1

    def kill(self, delay_s: float = 0.0) -> None:
        if delay_s > 0:
            time.sleep(delay_s)
        self.server.kill()
        self.tally.kills += 1

    def crashed(self) -> None:
        """After a kill point: make sure the process is gone, drop the client."""
        self.server.kill()
        self.client.close()
        self.http = None

    def run(self, kills: int, kill_point: Callable[[Series, int], None]) -> None:
        for i in range(kills):
            kill_point(self, i)
            self.crashed()
            self.restart_and_check()
        self.server.kill()
        self.client.close()
        self.pool.shutdown()


def run_series(name: str, factory: Callable[[str], Server], kill_point: Callable[[Series, int], None], *,
               kills: int, agents: int = 1, lanes: int = 2, setup: Callable[[Series], None] | None = None) -> None:
    """`kills` kill/restart cycles split over `lanes` servers side by side (restarts are CPU-bound and
    mostly imports, so two lanes use both cores); then fail with every finding of every lane."""

    def lane(n: int) -> Series:
        series = Series(factory(f"{name.split()[0]}-{n}"), agents, random.Random(f"{SEED}:{name}:{n}"))
        if setup is not None:
            setup(series)
        series.run(kills // lanes + (n < kills % lanes), kill_point)
        return series

    with ThreadPoolExecutor(lanes) as pool:
        done = list(pool.map(lane, range(lanes)))
    tally, findings = TALLIES.setdefault(name, Tally()), Findings()
    for series in done:
        tally.add(series.tally)
        findings.extend(series.findings)
    print(f"\n[crash] seed {SEED}: {tally.line(name)}")
    assert not findings, (
        f"seed {SEED}: {len(findings.turns_lost)} acknowledged turns lost, {len(findings.edits_lost)} "
        f"acknowledged edits lost, {len(findings.half_turns)} half-written turns:\n"
        + "\n".join(findings.turns_lost + findings.edits_lost + findings.half_turns))


# --- (a) right after the acknowledgement ---------------------------------------------------------


def _after_ack(s: Series, i: int) -> None:
    """A turn on every agent at once, stream or not at random; SIGKILL 0-7 ms after the last one ended."""
    jobs = []
    for agent in s.agents:
        nonce = s.nonce()
        jobs.append((agent, f"say {nonce}", f"said {nonce}", s.rng.random() < 0.5))

    def turn(job: tuple[str, str, str, bool]) -> str | None:
        agent, text, reply, stream = job
        headers = _sim(reply=reply)
        if stream:
            return _stream(s.client, agent, text, headers)
        return _completion(s.client, agent, text, headers)

    replies = list(s.pool.map(turn, jobs))
    s.kill(s.rng.uniform(0, 0.007))
    for (agent, text, reply, _), got in zip(jobs, replies):
        assert got == reply
        s.acked_turn(agent, text, reply)
    if s.server.database_url:
        texts = [text for _, text, _, _ in jobs] + [reply for _, _, reply, _ in jobs]
        indexed = pg.run_blocking(_recall_texts(s.server.database_url, texts))
        assert indexed == set(texts), f"acknowledged, but not in the recall table: {set(texts) - indexed}"
        s.recall_due += [(agent, text) for agent, text, _, _ in jobs]


async def _recall_texts(url: str, texts: list[str]) -> set[str]:
    """Which of `texts` the recall table holds, read straight from PostgreSQL while no server runs."""
    con = await asyncpg.connect(url)
    try:
        return {row[0] for row in await con.fetch("SELECT text FROM recall WHERE text = ANY($1::text[])", texts)}
    finally:
        await con.close()


def test_kill_right_after_the_turn_is_acknowledged(server_factory: Callable[[str], Server]) -> None:
    run_series("acked (after [DONE] / 200)", server_factory, _after_ack, kills=_kills(12), agents=2)


# --- (b) mid-stream --------------------------------------------------------------------------------


def _mid_stream(s: Series, i: int) -> None:
    """A slow stream; SIGKILL after 1-20 content chunks. The turn may then be absent, or whole: never half."""
    agent, nonce = s.agents[0], s.nonce()
    text, reply = f"tell {nonce}", " ".join([f"word{k}" for k in range(40)]) + f" {nonce}"
    after = s.rng.randint(1, 20)
    delay = s.rng.uniform(0, 0.007)

    def on_content(n: int) -> bool:
        if n < after:
            return False
        s.kill(delay)
        return True

    try:
        out = _stream(s.client, agent, text, _sim(reply=reply, token_delay_ms=3), on_content)
    except httpx.HTTPError:
        out = None
    assert out is None, "the stream finished before the kill"
    s.ledger.turn(agent, text, reply, acked=False)


def test_kill_mid_stream(server_factory: Callable[[str], Server]) -> None:
    run_series("mid-stream", server_factory, _mid_stream, kills=_kills(6))


# --- (c) right after a server memory tool ran --------------------------------------------------------


def _told(needle: str) -> Callable[[dict[str, Any]], bool]:
    """Matches the upstream request that carries the result of the tool call holding `needle`."""

    def match(body: dict[str, Any]) -> bool:
        messages = body.get("messages") or []
        if not messages or messages[-1].get("role") != "tool" or "updated" not in str(messages[-1].get("content")):
            return False
        calls = next((m.get("tool_calls") or [] for m in reversed(messages) if m.get("role") == "assistant"), [])
        return any(needle in c["function"]["arguments"] for c in calls)

    return match


def _edit_step(s: Series, agent: str) -> tuple[dict[str, Any], Callable[[], None]]:
    """One memory-tool call with a fresh needle, and how to record it once the model was told."""
    needle = f"fact-{s.nonce()}"
    kind = s.rng.choice(("memory_insert", "core_memory_append", "memory_rethink"))
    if kind == "memory_insert":
        call = {"name": kind, "arguments": {"label": "human", "new_str": needle}}
        return call, lambda: s.acked_edit(agent, "human", needle)
    if kind == "core_memory_append":
        call = {"name": kind, "arguments": {"label": "human", "content": needle}}
        return call, lambda: s.acked_edit(agent, "human", needle)
    call = {"name": kind, "arguments": {"label": "persona", "new_memory": f"I am helpful. {needle}"}}
    return call, lambda: s.acked_edit(agent, "persona", needle, replaces=True)


def _after_memory_tool(s: Series, i: int, tripwire: Tripwire) -> None:
    """1-2 tool steps; the upstream SIGKILLs memproxy 0-3 ms after receiving the last step's result."""
    agent, nonce = s.agents[0], s.nonce()
    steps = [_edit_step(s, agent) for _ in range(s.rng.randint(1, 2))]
    script = [{"tool_calls": [call]} for call, _ in steps] + [{"reply": f"noted {nonce}"}]
    last_needle = next(v for k, v in steps[-1][0]["arguments"].items() if k != "label")
    pid = s.server.pid
    assert pid is not None
    fired = tripwire.arm(pid, _told(last_needle), s.rng.uniform(0, 0.003))
    text = f"remember {nonce}"
    try:
        if s.rng.random() < 0.5:
            _stream(s.client, agent, text, _sim(script=script))
        else:
            _completion(s.client, agent, text, _sim(script=script))
    except (httpx.HTTPError, AssertionError):
        pass  # the server died under the request
    tripwire.disarm(pid)
    assert fired.wait(10), f"the tool result never reached the upstream\n{s.server.log_tail()}"
    s.tally.kills += 1
    for _, record in steps:
        record()  # every step's result went back to the model: the model was told each edit was saved
    s.ledger.turn(agent, text, f"noted {nonce}", acked=False)


def test_kill_right_after_a_memory_tool_ran(server_factory: Callable[[str], Server],
                                            upstream: tuple[str, Tripwire]) -> None:
    tripwire = upstream[1]
    run_series("memory-tool (after its result went upstream)", server_factory,
               lambda s, i: _after_memory_tool(s, i, tripwire), kills=_kills(12))


# --- (d) right after a management write answered 2xx ----------------------------------------------------


def _value_is(path: str, key: str, value: str) -> Callable[[httpx.Client], bool]:
    def check(http: httpx.Client) -> bool:
        response = http.get(path)
        assert response.status_code in (200, 404), f"GET {path}: {response.status_code} {response.text[:300]}"
        return response.status_code == 200 and response.json().get(key) == value

    return check


def _after_management_write(s: Series, i: int) -> None:
    """One of six writes; SIGKILL 0-7 ms after its 2xx."""
    agent, v = s.agents[0], f"v-{s.nonce()}"
    kind = i % 6
    if kind == 0:
        path = f"/v1/agents/{agent}/core-memory/blocks/persona"
        response = s.client.patch(path, json={"value": v})
        target, what, check = path, f"PATCH {path} value={v}", _value_is(path, "value", v)
    elif kind == 1:
        path = f"/v1/agents/{agent}"
        response = s.client.patch(path, json={"description": v})
        target, what, check = path, f"PATCH {path} description={v}", _value_is(path, "description", v)
    elif kind == 2:
        response = s.client.post("/v1/blocks", json={"label": "note", "value": v})
        path = f"/v1/blocks/{response.json().get('id')}"
        target, what, check = path, f"POST /v1/blocks value={v}", _value_is(path, "value", v)
    elif kind == 3:
        path = f"/v1/blocks/{s.shared_block}"
        response = s.client.patch(path, json={"value": v})
        target, what, check = path, f"PATCH {path} value={v}", _value_is(path, "value", v)
    elif kind == 4:
        path = f"/v1/agents/{agent}/archival-memory"
        response = s.client.post(path, json={"text": v})

        def check(http: httpx.Client) -> bool:
            got = http.get(path, params={"limit": 1000})
            assert got.status_code == 200, f"GET {path}: {got.status_code} {got.text[:300]}"
            return any(p["text"] == v for p in got.json())

        target, what = v, f"POST {path} text={v}"
    else:
        response = s.client.post("/v1/agents", json={**AGENT, "name": v})
        path = f"/v1/agents/{response.json().get('id')}"
        target, what, check = path, f"POST /v1/agents name={v}", _value_is(path, "name", v)
    assert response.is_success, response.text
    s.kill(s.rng.uniform(0, 0.007))
    s.acked_write(target, what, check)


def _shared_block(s: Series) -> None:
    s.shared_block = s._ok(s.client.post("/v1/blocks", json={"label": "shared", "value": "start"}))["id"]


def test_kill_right_after_a_management_write(server_factory: Callable[[str], Server]) -> None:
    run_series("management (after a 2xx)", server_factory, _after_management_write, kills=_kills(12),
               setup=_shared_block)


# --- (e) right after an MCP server or MCP tool registration answered 2xx --------------------------------

_MCP_SCRIPT = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "tools" / "mcp_server.py")


def _stdio_mcp(s: Series) -> None:
    """A stdio MCP server (tests/tools/mcp_server.py) whose tools the kills register; memproxy starts it."""
    import sys

    body = {"server_name": "crash-stdio", "command": sys.executable, "args": [_MCP_SCRIPT, "stdio"]}
    s.shared_block = s._ok(s.client.post("/v1/mcp-servers", json=body))["id"]


def _after_mcp_write(s: Series, i: int) -> None:
    """Register a remote server, or one tool of the stdio server; SIGKILL 0-7 ms after the 2xx."""
    lane = int(s.server.data_dir.name.rsplit("-", 1)[1])  # with one kill per lane, the lanes do one kind each
    if (i + lane) % 2 == 0:
        name = f"remote-{s.nonce()}"
        response = s.client.post("/v1/mcp-servers", json={"server_name": name, "server_url": "http://127.0.0.1:9/mcp",
                                                          "auth_token": "Bearer crash-secret-token"})
        path = f"/v1/mcp-servers/{response.json().get('id')}"
        target, what, check = path, f"POST /v1/mcp-servers server_name={name}", _value_is(path, "server_name", name)
    else:
        tool = ("add", "weather", "whoami", "picture")[(i // 2) % 4]
        response = s.client.post(f"/v1/mcp-servers/{s.shared_block}/tools/{tool}", timeout=60)
        path = f"/v1/tools/{response.json().get('id')}"
        target, what, check = path, f"POST .../tools/{tool}", _value_is(path, "name", tool)
    assert response.is_success, response.text
    s.kill(s.rng.uniform(0, 0.007))
    s.acked_write(target, what, check)


def test_kill_right_after_an_mcp_registration(server_factory: Callable[[str], Server]) -> None:
    run_series("mcp (after a 2xx)", server_factory, _after_mcp_write, kills=2, setup=_stdio_mcp)
