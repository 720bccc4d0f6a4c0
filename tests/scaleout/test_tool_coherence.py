"""Custom tools and MCP servers written through one replica are what the next turn on another one runs."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx

from replicas import ROOT, Fleet
from helpers import create_agent, sim_headers

sys.path.insert(0, str(ROOT / "tests" / "tools"))  # the MCP test server's helpers (their folder is not on the path)
from mcp_support import stdio_body  # noqa: E402


def tool_source(word: str, name: str = "shout") -> str:
    return f'''def {name}(text: str) -> str:
    """Say the text loudly.

    Args:
        text: what to say
    """
    return "{word}: " + text.upper()
'''


def create_tool(base_url: str, source: str) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/tools/", json={"source_code": source}, timeout=30)


def attach(base_url: str, agent: str, tool_id: str) -> None:
    response = httpx.patch(f"{base_url}/v1/agents/{agent}/tools/attach/{tool_id}", timeout=10)
    assert response.status_code == 200, response.text


def warm(base_url: str, agent: str) -> None:
    response = httpx.post(f"{base_url}/v1/chat/completions", timeout=60,
                          json={"model": agent, "messages": [{"role": "user", "content": "hello"}]})
    assert response.status_code == 200, response.text


def call(base_url: str, agent: str, name: str, arguments: dict[str, Any]) -> str:
    """One turn in which the model calls `name`: the tool's return, as stored."""
    script = [{"tool_calls": [{"name": name, "arguments": arguments}]}, {"reply": "done"}]
    response = httpx.post(f"{base_url}/v1/chat/completions", timeout=60, headers=sim_headers(script=script),
                          json={"model": agent, "messages": [{"role": "user", "content": f"use {name}"}]})
    assert response.status_code == 200, response.text
    history = httpx.get(f"{base_url}/v1/agents/{agent}/messages", params={"order": "desc", "limit": 5},
                        timeout=10).json()
    returned = next(m["tool_return"] for m in history if m["message_type"] == "tool_return_message")
    return str(returned)


def offered(sim_requests: Any, name: str) -> bool:
    last = [r for r in sim_requests() if r["messages"][0]["content"].startswith("You are a test agent.")][-1]
    return name in [t["function"]["name"] for t in last.get("tools") or []]


def test_a_custom_tool_created_updated_and_deleted_on_one_replica_is_what_another_runs(
        fleet3: Fleet, sim_requests: Any) -> None:
    a, b, c = (r.base_url for r in fleet3.replicas)
    agent = create_agent(a)
    warm(b, agent)  # B caches the agent and its tools before they change

    created = create_tool(a, tool_source("v1"))
    assert created.status_code == 200, created.text
    tool_id = created.json()["id"]
    attach(c, agent, tool_id)  # C knows the tool without a restart
    assert call(b, agent, "shout", {"text": "hi"}) == "v1: HI" and offered(sim_requests, "shout")

    changed = httpx.patch(f"{a}/v1/tools/{tool_id}", json={"source_code": tool_source("v2")}, timeout=30)
    assert changed.status_code == 200, changed.text
    assert call(b, agent, "shout", {"text": "hi"}) == "v2: HI"
    assert httpx.get(f"{c}/v1/tools/{tool_id}", timeout=10).json()["source_code"] == tool_source("v2")
    upserted = httpx.put(f"{c}/v1/tools/", json={"source_code": tool_source("v3")}, timeout=30)  # Letta's upsert
    assert upserted.status_code == 200 and upserted.json()["id"] == tool_id, upserted.text
    assert call(b, agent, "shout", {"text": "hi"}) == "v3: HI"

    assert httpx.delete(f"{a}/v1/tools/{tool_id}", timeout=30).status_code == 200
    result = call(b, agent, "shout", {"text": "hi"})
    assert "no tool named 'shout'" in result and not offered(sim_requests, "shout")
    for base in (b, c):
        assert httpx.get(f"{base}/v1/tools/{tool_id}", timeout=10).status_code == 404
        assert httpx.get(f"{base}/v1/tools/", params={"name": "shout"}, timeout=10).json() == []


def test_an_mcp_server_registered_on_one_replica_lists_and_serves_its_tools_on_another(
        fleet3: Fleet, sim_requests: Any) -> None:
    a, b, c = (r.base_url for r in fleet3.replicas)
    agent = create_agent(a)
    warm(b, agent)
    made = httpx.post(f"{a}/v1/mcp-servers/", json=stdio_body("fleet-mcp"), timeout=30)
    assert made.status_code == 200, made.text
    server_id = made.json()["id"]
    listed = httpx.get(f"{b}/v1/mcp-servers/", timeout=10).json()
    assert [s["server_name"] for s in listed if s["id"] == server_id] == ["fleet-mcp"]
    tools = httpx.get(f"{c}/v1/mcp-servers/{server_id}/tools", timeout=30)  # C started its own stdio process
    assert tools.status_code == 200 and "add" in [t["name"] for t in tools.json()]
    registered = httpx.post(f"{a}/v1/mcp-servers/{server_id}/tools/add", timeout=30)
    assert registered.status_code == 200, registered.text
    attach(c, agent, registered.json()["id"])
    assert call(b, agent, "add", {"a": 2, "b": 40}) == "42" and offered(sim_requests, "add")
    renamed = httpx.patch(f"{a}/v1/mcp-servers/{server_id}", json={"server_name": "fleet-mcp-renamed"}, timeout=30)
    assert renamed.status_code == 200, renamed.text
    assert httpx.get(f"{b}/v1/mcp-servers/{server_id}", timeout=10).json()["server_name"] == "fleet-mcp-renamed"
    assert call(b, agent, "add", {"a": 1, "b": 2}) == "3"  # B's new connection serves the tool

    assert httpx.delete(f"{c}/v1/mcp-servers/{server_id}", timeout=30).status_code == 204
    assert httpx.get(f"{b}/v1/mcp-servers/{server_id}", timeout=10).status_code == 404
    result = call(b, agent, "add", {"a": 1, "b": 1})
    assert "no tool named 'add'" in result


def test_concurrent_registrations_across_replicas_keep_every_tool_and_one_of_each_name(
        fleet3: Fleet) -> None:
    bases = [r.base_url for r in fleet3.replicas]
    made = httpx.post(f"{bases[0]}/v1/mcp-servers/", json=stdio_body("race-mcp"), timeout=30)
    assert made.status_code == 200, made.text
    server_id = made.json()["id"]
    names = ["add", "weather", "picture", "broken"]

    def post(args: tuple[str, str]) -> httpx.Response:
        base, path = args
        return httpx.post(base + path, timeout=60)

    # Four tools of one server registered at once through three replicas: none is lost.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, [(bases[i % 3], f"/v1/mcp-servers/{server_id}/tools/{n}")
                                       for i, n in enumerate(names)]))
    assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
    stored = fleet3.query("SELECT tools FROM mcp_servers WHERE id = $1", server_id)[0]["tools"]
    assert sorted(spec["name"] for spec in json.loads(stored)) == sorted(names)
    for base in bases:
        assert {t["name"] for t in httpx.get(f"{base}/v1/tools/", params={"limit": 1000}, timeout=10).json()} >= set(names)

    # The same server name, and the same tool name, registered at once everywhere: one wins, the rest get 409.
    def race(send: Callable[[str], httpx.Response]) -> list[int]:
        with ThreadPoolExecutor(6) as pool:
            return sorted(r.status_code for r in pool.map(send, bases * 2))

    assert race(lambda base: httpx.post(f"{base}/v1/mcp-servers/", json=stdio_body("twin"), timeout=60)) == \
        [200] + [409] * 5
    assert race(lambda base: create_tool(base, tool_source("race", "echo_race"))) == [200] + [409] * 5
    assert fleet3.query("SELECT count(*) AS n FROM mcp_servers WHERE server_name = 'twin'")[0]["n"] == 1
    assert fleet3.query("SELECT count(*) AS n FROM tools WHERE name = 'echo_race'")[0]["n"] == 1


def test_a_tool_write_acknowledged_by_a_replica_killed_next_is_called_on_another_and_a_held_lock_is_409(
        make_fleet: Callable[[], Fleet]) -> None:
    import redis

    fleet = make_fleet()
    a, b = fleet.start(2, MEMPROXY_AGENT_LOCK_TIMEOUT="1")
    agent = create_agent(b.base_url)
    warm(b.base_url, agent)
    created = create_tool(a.base_url, tool_source("kept", "kept_tool"))
    assert created.status_code == 200, created.text
    a.kill()  # right after the acknowledgement: the write and its announcement are already out
    attach(b.base_url, agent, created.json()["id"])
    assert call(b.base_url, agent, "kept_tool", {"text": "x"}) == "kept: X"

    # The tools lock held elsewhere (a writer mid-change) past the wait: 409, nothing stored; then it works.
    client = redis.Redis.from_url(fleet.redis_url)
    try:
        client.set(fleet.prefix + "turn:@tools", "another-writer", px=3000)
        busy = create_tool(b.base_url, tool_source("busy", "busy_tool"))
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "tools_busy"
        assert fleet.query("SELECT count(*) AS n FROM tools WHERE name = 'busy_tool'")[0]["n"] == 0
        client.delete(fleet.prefix + "turn:@tools")
    finally:
        client.close()
    assert create_tool(b.base_url, tool_source("busy", "busy_tool")).status_code == 200


def test_a_custom_tool_imported_beside_a_running_replica_is_called_by_its_next_turn(
        make_fleet: Callable[[], Fleet], tmp_path: Path) -> None:
    source, target = make_fleet(), make_fleet()
    origin = source.replica()
    created = create_tool(origin.base_url, tool_source("moved", "moved_tool"))
    assert created.status_code == 200, created.text
    running = target.replica()
    agent = create_agent(running.base_url)
    warm(running.base_url, agent)  # its registry is loaded, at the fleet's tools version, before the import

    exported = tmp_path / "tools.jsonl.gz"
    memproxy("export", str(exported), env={**source.env})
    out = memproxy("import", str(exported), env={**target.env})
    assert "tool" in out

    listed = httpx.get(f"{running.base_url}/v1/tools/", params={"name": "moved_tool"}, timeout=10).json()
    assert [t["id"] for t in listed] == [created.json()["id"]]
    attach(running.base_url, agent, created.json()["id"])
    assert call(running.base_url, agent, "moved_tool", {"text": "hi"}) == "moved: HI"

    # Redis not answering: the import still completes, and says when the servers will see its tools.
    another = create_tool(origin.base_url, tool_source("later", "later_tool"))
    assert another.status_code == 200, another.text
    memproxy("export", str(exported), env={**source.env})
    out = memproxy("import", str(exported), env={**target.env, "MEMPROXY_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert "Redis did not answer" in out and "next start" in out
    assert target.query("SELECT count(*) AS n FROM tools WHERE name = 'later_tool'")[0]["n"] == 1


def memproxy(*args: str, env: dict[str, str]) -> str:
    """`memproxy ARGS` as a subprocess with a fleet's settings; its stderr (the report) when it succeeds."""
    done = subprocess.run([sys.executable, "-m", "proxy", *args, "--quiet"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr
