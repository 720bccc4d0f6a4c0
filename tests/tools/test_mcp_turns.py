"""MCP tools in agent turns: called by the (scripted) model over each transport, failures are tool errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from mcp_support import McpProcess, stdio_body
from helpers import agent_calls, create_agent, sdk, sim_headers


def _server(base_url: str, body: dict[str, Any], *tools: str) -> str:
    response = httpx.post(f"{base_url}/v1/mcp-servers/", json=body, timeout=10)
    assert response.status_code == 200, response.text
    server_id = response.json()["id"]
    for name in tools:
        registered = httpx.post(f"{base_url}/v1/mcp-servers/{server_id}/tools/{name}", timeout=30)
        assert registered.status_code == 200, registered.text
    return server_id


def _attach(base_url: str, agent: str, server_id: str, name: str) -> None:
    tool_id = next(t["id"] for t in httpx.get(f"{base_url}/v1/mcp-servers/{server_id}/tools", timeout=30).json()
                   if t["name"] == name)
    response = httpx.patch(f"{base_url}/v1/agents/{agent}/tools/attach/{tool_id}", timeout=10)
    assert response.status_code == 200, response.text


def _chat(base_url: str, agent: str, calls: list[dict[str, Any]], reply: str = "Done.") -> Any:
    script = [{"tool_calls": calls}, {"reply": reply}]
    return sdk(base_url).chat.completions.create(model=agent, messages=[{"role": "user", "content": "go"}],
                                                 extra_headers=sim_headers(script=script))


def _results(sim_requests: Any, count: int) -> list[str]:
    return [m["content"] for m in agent_calls(sim_requests)[-1]["messages"][-count:]]


def _returns(base_url: str, agent: str) -> list[tuple[str, str, str]]:
    history = httpx.get(f"{base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
    return [(m["name"], m["tool_return"], m["status"]) for m in history if m["message_type"] == "tool_return_message"]


def test_streamable_http_tools_are_called_in_a_turn_with_text_structured_and_image_results(
        server, sim_requests, mcp_http: McpProcess) -> None:
    server_id = _server(server.base_url, {"server_name": "turn-http", "server_url": mcp_http.url},
                        "add", "weather", "picture", "broken")
    agent = create_agent(server.base_url)
    for name in ("add", "weather", "picture", "broken"):
        _attach(server.base_url, agent, server_id, name)
    out = _chat(server.base_url, agent, [{"name": "add", "arguments": {"a": 2, "b": 40}},
                                         {"name": "weather", "arguments": {"city": "Oslo"}},
                                         {"name": "picture", "arguments": {}},
                                         {"name": "broken", "arguments": {"reason": "test"}},
                                         {"name": "add", "arguments": {"a": "two", "b": 1}}])
    assert out.choices[0].message.content == "Done." and out.choices[0].message.tool_calls is None
    offered = [t["function"]["name"] for t in agent_calls(sim_requests)[0]["tools"]]
    assert {"add", "weather", "picture", "broken"} <= set(offered)
    add, weather, picture, broken, bad_args = _results(sim_requests, 5)
    assert add == "42"
    assert '"forecast": "sunny"' in weather and '"city": "Oslo"' in weather
    assert picture == "here is a picture\n[image: image/png, 9 bytes, not shown]"
    assert broken.startswith("Error: the MCP tool `broken` reported an error: ")
    assert bad_args.startswith("Error: bad arguments for `add`: a: 'two' is not of type 'integer'")
    returns = _returns(server.base_url, agent)
    assert [(n, s) for n, _, s in returns] == [("add", "success"), ("weather", "success"), ("picture", "success"),
                                               ("broken", "error"), ("add", "error")]
    assert returns[0][1] == "42"


def test_sse_tools_are_called_in_a_turn(server, sim_requests, mcp_sse: McpProcess) -> None:
    # Tool names are one namespace: this server's `add` and `weather` are taken by the HTTP server's above.
    server_id = _server(server.base_url, {"server_name": "turn-sse", "type": "sse", "server_url": mcp_sse.url,
                                          "auth_token": "Bearer sse-token-0042"}, "auth_seen")
    agent = create_agent(server.base_url)
    _attach(server.base_url, agent, server_id, "auth_seen")
    _chat(server.base_url, agent, [{"name": "auth_seen", "arguments": {}}])
    assert _results(sim_requests, 1) == [f"auth={len('Bearer sse-token-0042')}:0042 custom=0:"]
    assert [(n, s) for n, _, s in _returns(server.base_url, agent)] == [("auth_seen", "success")]


def test_a_server_that_is_down_or_slow_is_a_tool_error_and_the_turn_completes(
        server, sim_requests, mcp_factory) -> None:
    srv = server
    # MEMPROXY_MCP_TIMEOUT=1 for this test (set on the shared server's runtime rather than starting another).
    before, srv.rt.mcp.call_timeout = srv.rt.mcp.call_timeout, 1.0
    try:
        _down_or_slow(srv, sim_requests, mcp_factory("streamable-http"))
    finally:
        srv.rt.mcp.call_timeout = before


def _down_or_slow(srv: Any, sim_requests: Any, mcp: McpProcess) -> None:
    # Tool names are one namespace: only `slow` of this server's tools is still free on the shared server.
    server_id = _server(srv.base_url, {"server_name": "fragile", "server_url": mcp.url}, "slow")
    agent = create_agent(srv.base_url, tools=["slow"])
    out = _chat(srv.base_url, agent, [{"name": "slow", "arguments": {"seconds": 30}}], "It timed out.")
    assert out.choices[0].message.content == "It timed out."
    assert _results(sim_requests, 1) == ["Error: the MCP tool `slow` could not run: the MCP server did not answer "
                                         "calling `slow` within 1 s"]
    # The session survives a slow call.
    _chat(srv.base_url, agent, [{"name": "slow", "arguments": {"seconds": 0}}])
    assert _results(sim_requests, 1) == ["done sleeping"]

    mcp.stop()
    out = _chat(srv.base_url, agent, [{"name": "slow", "arguments": {"seconds": 0}}], "It is down.")
    assert out.choices[0].message.content == "It is down."
    [result] = _results(sim_requests, 1)
    assert result.startswith("Error: the MCP tool `slow` could not run: "), result
    runs = httpx.get(f"{srv.base_url}/v1/runs/", params={"agent_id": agent}).json()
    assert [r["status"] for r in runs] == ["completed"] * 3
    assert [s for _, _, s in _returns(srv.base_url, agent)] == ["error", "success", "error"]
    assert server_id in srv.rt.mcp.servers


def test_a_stdio_server_runs_in_a_clean_env_and_is_restarted_when_it_exits(server, sim_requests) -> None:
    server_id = _server(server.base_url, stdio_body("turn-stdio", MCP_TEST_VALUE="from-config"), "whoami", "exit_now")
    agent = create_agent(server.base_url, tools=["whoami", "exit_now"])
    _chat(server.base_url, agent, [{"name": "whoami", "arguments": {}}])
    [first] = _results(sim_requests, 1)
    assert "value=from-config" in first
    names = set(first.split("names=")[1].split(","))
    assert names <= {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "MCP_TEST_VALUE", "LC_CTYPE"}, names
    pid = first.split()[0]

    connection = server.rt.mcp.connections[server_id]
    out = _chat(server.base_url, agent, [{"name": "exit_now", "arguments": {}}], "It crashed.")
    assert out.choices[0].message.content == "It crashed."
    assert _results(sim_requests, 1)[0].startswith("Error: the MCP tool `exit_now` could not run: ")

    async def restarted() -> None:  # the supervisor starts it again after its backoff (0.5 s the first time)
        while connection.restarts < 1 or connection._client is None:
            await connection._changed.wait()

    server.call(asyncio.wait_for(restarted(), 25))
    _chat(server.base_url, agent, [{"name": "whoami", "arguments": {}}])
    [second] = _results(sim_requests, 1)
    assert "value=from-config" in second and second.split()[0] != pid
