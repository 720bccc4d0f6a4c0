"""The MCP servers API: register, list, get, delete servers; list and register their tools; secrets masked."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_support import McpProcess, stdio_body
from helpers import create_agent, free_port

TOKEN = "Bearer mcp-token-abcdefghijklmnop-4321"
CUSTOM = "custom-secret-qrstuvwxyz-8765"


def _post(base_url: str, body: Any) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/mcp-servers/", json=body, timeout=10)


def _register(base_url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = _post(base_url, body)
    assert response.status_code == 200, response.text
    return response.json()


def _servers(base_url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base_url}/v1/mcp-servers/", timeout=10).json()


def test_a_streamable_http_server_is_registered_listed_and_its_secrets_are_never_shown(
        server, mcp_http: McpProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"server_name": "http-secrets", "type": "streamable_http", "server_url": mcp_http.url,
            "auth_header": "Authorization", "auth_token": TOKEN, "custom_headers": {"X-Custom": CUSTOM}}
    created = _register(server.base_url, body)
    assert created["id"].startswith("mcp_server-") and created["server_url"] == mcp_http.url
    assert created["type"] == "streamable_http" and created["auth_header"] == "Authorization"
    one = httpx.get(f"{server.base_url}/v1/mcp-servers/{created['id']}").json()
    listed = [s for s in _servers(server.base_url) if s["id"] == created["id"]]
    assert one == created and listed == [created]
    shown = httpx.get(f"{server.base_url}/v1/mcp-servers/{created['id']}").text
    assert TOKEN not in shown and CUSTOM not in shown and TOKEN[-8:] not in shown and CUSTOM[-8:] not in shown
    assert created["auth_token"] != TOKEN and created["custom_headers"]["X-Custom"] != CUSTOM

    tools = httpx.get(f"{server.base_url}/v1/mcp-servers/{created['id']}/tools", timeout=30)
    assert tools.status_code == 200, tools.text
    by_name = {t["name"]: t for t in tools.json()}
    assert {"add", "weather", "slow", "broken", "picture", "auth_seen"} <= set(by_name)
    add = by_name["add"]
    assert add["tool_type"] == "external_mcp" and add["description"] == "Add two integers."
    assert add["json_schema"]["parameters"]["required"] == ["a", "b"]
    assert add["metadata"] == {"mcp": {"server_id": created["id"], "server_name": "http-secrets"}}
    one_tool = httpx.get(f"{server.base_url}/v1/mcp-servers/{created['id']}/tools/{add['id']}", timeout=30)
    assert one_tool.status_code == 200 and one_tool.json() == add
    missing = httpx.get(f"{server.base_url}/v1/mcp-servers/{created['id']}/tools/tool-nope", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    # The headers reach the server: it answers with their lengths and last four characters.
    registered = httpx.post(f"{server.base_url}/v1/mcp-servers/{created['id']}/tools/auth_seen", timeout=30)
    assert registered.status_code == 200, registered.text
    tool = registered.json()
    assert tool["name"] == "auth_seen" and tool["tool_type"] == "external_mcp"
    assert httpx.get(f"{server.base_url}/v1/tools/{tool['id']}").json()["id"] == tool["id"]
    refused = httpx.delete(f"{server.base_url}/v1/tools/{tool['id']}")  # its server owns it
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "mcp_tool"
    assert "http-secrets" in refused.json()["error"]["message"]
    assert httpx.get(f"{server.base_url}/v1/tools/{tool['id']}").status_code == 200
    result = server.call(server.rt.mcp.call(created["id"], "auth_seen", {}))
    assert result == f"auth={len(TOKEN)}:{TOKEN[-4:]} custom={len(CUSTOM)}:{CUSTOM[-4:]}"
    # Registering again is the same tool, not a clash.
    again = httpx.post(f"{server.base_url}/v1/mcp-servers/{created['id']}/tools/auth_seen", timeout=30)
    assert again.status_code == 200 and again.json()["id"] == tool["id"]
    assert TOKEN not in caplog.text and CUSTOM not in caplog.text
    assert TOKEN[-12:] not in caplog.text and CUSTOM[-12:] not in caplog.text


def test_an_sse_server_lists_its_tools(server, mcp_sse: McpProcess) -> None:
    created = _register(server.base_url, {"server_name": "sse-one", "type": "sse", "server_url": mcp_sse.url})
    assert created["type"] == "sse" and created["auth_token"] is None and created["custom_headers"] is None
    tools = httpx.get(f"{server.base_url}/v1/mcp-servers/{created['id']}/tools", timeout=30)
    assert tools.status_code == 200, tools.text
    assert "weather" in [t["name"] for t in tools.json()]


@pytest.mark.parametrize("body, status, param", [
    ({"type": "stdio", "command": "x"}, 422, "server_name"),
    ({"server_name": "", "server_url": "http://127.0.0.1:1/mcp"}, 422, "server_name"),
    ({"server_name": "a", "type": "websocket", "server_url": "http://127.0.0.1:1/mcp"}, 422, "type"),
    ({"server_name": "a", "type": "sse"}, 422, "server_url"),
    ({"server_name": "a", "server_url": "ftp://example.com/mcp"}, 422, "server_url"),
    ({"server_name": "a", "server_url": 42}, 422, "server_url"),
    ({"server_name": "a", "type": "stdio", "args": []}, 422, "command"),
    ({"server_name": "a", "command": "x", "args": "not a list"}, 422, "args"),
    ({"server_name": "a", "command": "x", "args": [], "env": {"BAD NAME": "v"}}, 422, "env"),
    ({"server_name": "a", "command": "x", "env": {"K": 1}}, 422, "env"),
    ({"server_name": "a", "command": "x", "server_url": "http://127.0.0.1:1/mcp"}, 422, "server_url"),
    ({"server_name": "a", "server_url": "http://127.0.0.1:1/mcp", "auth_header": "Bad Header"}, 422, "auth_header"),
    ({"server_name": "a", "server_url": "http://127.0.0.1:1/mcp", "auth_token": "a\r\nX-Evil: 1"}, 422,
     "auth_token"),
    ({"server_name": "a", "server_url": "http://127.0.0.1:1/mcp", "custom_headers": {"X": "a\nb"}}, 422,
     "custom_headers"),
    ({"server_name": "a", "server_url": "http://127.0.0.1:1/mcp", "headers": {}}, 422, "headers"),
    # The shape Letta's SDKs send: the connection under `config`, its type as `mcp_server_type`.
    ({"server_name": "a", "config": {"mcp_server_type": "streamable_http"}}, 422, "server_url"),
    ({"server_name": "a", "config": {"mcp_server_type": "stdio", "server_url": "http://127.0.0.1:1/mcp"}}, 422,
     "server_url"),
    ({"server_name": "a", "config": {"server_url": "http://127.0.0.1:1/mcp", "headers": {}}}, 422, "headers"),
    ({"server_name": "a", "server_url": "http://127.0.0.1:1/mcp", "config": {"server_url": "http://127.0.0.1:2/mcp"}},
     422, "server_url"),
    ({"server_name": "a", "config": "http://127.0.0.1:1/mcp"}, 422, "config"),
    ({"server_name": "a", "config": {"mcp_server_type": "websocket", "server_url": "http://127.0.0.1:1/mcp"}}, 422,
     "config.mcp_server_type"),
    ([1, 2], 400, None),
])
def test_bad_bodies_are_4xx_in_the_openai_shape_and_nothing_is_stored(server, body: Any, status: int,
                                                                      param: str | None) -> None:
    before = _servers(server.base_url)
    response = _post(server.base_url, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["param"] == param
    assert _servers(server.base_url) == before
    assert len(server.rt.mcp.connections) == len(before)


def test_unknown_servers_are_404_and_an_unreachable_server_is_502(server) -> None:
    for method, path in (("GET", "/v1/mcp-servers/mcp_server-nope"), ("DELETE", "/v1/mcp-servers/mcp_server-nope"),
                         ("GET", "/v1/mcp-servers/mcp_server-nope/tools"),
                         ("POST", "/v1/mcp-servers/mcp_server-nope/tools/add")):
        response = httpx.request(method, server.base_url + path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", path
    down = _register(server.base_url, {"server_name": "down", "server_url": f"http://127.0.0.1:{free_port()}/mcp"})
    for response in (httpx.get(f"{server.base_url}/v1/mcp-servers/{down['id']}/tools", timeout=30),
                     httpx.post(f"{server.base_url}/v1/mcp-servers/{down['id']}/tools/add", timeout=30)):
        assert response.status_code == 502, response.text
        assert response.json()["error"]["code"] == "mcp_server_unavailable"
    assert httpx.delete(f"{server.base_url}/v1/mcp-servers/{down['id']}").status_code == 204


def test_names_are_unique_and_a_tool_name_taken_by_another_tool_is_409(server, mcp_http: McpProcess,
                                                                       mcp_sse: McpProcess) -> None:
    first = _register(server.base_url, {"server_name": "clash-a", "server_url": mcp_http.url})
    same_name = _post(server.base_url, {"server_name": "clash-a", "type": "sse", "server_url": mcp_sse.url})
    assert same_name.status_code == 409 and same_name.json()["error"]["param"] == "server_name"
    second = _register(server.base_url, {"server_name": "clash-b", "type": "sse", "server_url": mcp_sse.url})
    ok = httpx.post(f"{server.base_url}/v1/mcp-servers/{first['id']}/tools/add", timeout=30)
    assert ok.status_code == 200, ok.text
    clash = httpx.post(f"{server.base_url}/v1/mcp-servers/{second['id']}/tools/add", timeout=30)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "conflict"
    builtin = httpx.post(f"{server.base_url}/v1/tools/", json={"source_code": "def weather(city: str) -> str:\n"
                                                               "    \"\"\"Local weather.\"\"\"\n    return city\n"})
    assert builtin.status_code == 200, builtin.text
    clash = httpx.post(f"{server.base_url}/v1/mcp-servers/{second['id']}/tools/weather", timeout=30)
    assert clash.status_code == 409
    missing = httpx.post(f"{server.base_url}/v1/mcp-servers/{second['id']}/tools/no_such_tool", timeout=30)
    assert missing.status_code == 404
    # Nothing of the refused registrations was kept.
    assert [t["name"] for t in server.rt.mcp.servers[second["id"]].tools] == []
    add = server.rt.registry.get("add")
    assert add.kind == "mcp" and add.record["server_id"] == first["id"]


def test_deleting_a_server_detaches_its_tools_and_stops_its_stdio_process(
        server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "env-secret-0123456789-zyxw"
    created = _register(server.base_url, stdio_body("stdio-delete", MCP_TEST_VALUE=secret))
    assert created["type"] == "stdio" and created["command"] and created["env"]["MCP_TEST_VALUE"] != secret
    assert secret[-8:] not in httpx.get(f"{server.base_url}/v1/mcp-servers/").text
    tool = httpx.post(f"{server.base_url}/v1/mcp-servers/{created['id']}/tools/whoami", timeout=30)
    assert tool.status_code == 200, tool.text
    agent = create_agent(server.base_url, tools=["whoami"])
    assert "whoami" in [t["name"] for t in httpx.get(f"{server.base_url}/v1/agents/{agent}/tools").json()]
    connection = server.rt.mcp.connections[created["id"]]
    assert connection._owner is not None and not connection._owner.done()
    assert httpx.delete(f"{server.base_url}/v1/mcp-servers/{created['id']}").status_code == 204
    assert httpx.get(f"{server.base_url}/v1/mcp-servers/{created['id']}").status_code == 404
    assert connection._owner.done() and connection._client is None
    assert "whoami" not in server.rt.registry
    assert "whoami" not in [t["name"] for t in httpx.get(f"{server.base_url}/v1/agents/{agent}/tools").json()]
    assert httpx.get(f"{server.base_url}/v1/tools/{tool.json()['id']}").status_code == 404
    assert secret not in caplog.text and secret[-10:] not in caplog.text


def test_servers_and_registered_tools_survive_a_restart_and_stdio_processes_stop_with_memproxy(
        make_server, tmp_path) -> None:
    data_dir = str(tmp_path / "data")
    srv = make_server(data_dir)
    created = _register(srv.base_url, stdio_body("stdio-restart", MCP_TEST_VALUE="kept"))
    tool = httpx.post(f"{srv.base_url}/v1/mcp-servers/{created['id']}/tools/whoami", timeout=30).json()
    agent = create_agent(srv.base_url, tools=["whoami"])
    first = srv.call(srv.rt.mcp.call(created["id"], "whoami", {}))
    pid = int(first.split()[0].removeprefix("pid="))
    srv.stop()
    with pytest.raises(ProcessLookupError):  # stopped with memproxy (and reaped: not even a zombie is left)
        os.kill(pid, 0)

    again = make_server(data_dir, database_url=srv.settings.database_url)
    assert _servers(again.base_url) == [created]
    assert httpx.get(f"{again.base_url}/v1/tools/{tool['id']}").json()["tool_type"] == "external_mcp"
    assert "whoami" in [t["name"] for t in httpx.get(f"{again.base_url}/v1/agents/{agent}/tools").json()]
    second = again.call(again.rt.mcp.call(created["id"], "whoami", {}))
    assert "value=kept" in second and int(second.split()[0].removeprefix("pid=")) != pid


def test_an_update_moves_the_server_and_its_attached_tools_follow_or_is_refused_whole(
        server, mcp_http: McpProcess, mcp_sse: McpProcess) -> None:
    base = server.base_url
    created = _register(base, {"server_name": "movable", "server_url": mcp_http.url,
                               "auth_header": "Authorization", "auth_token": TOKEN})
    assert httpx.post(f"{base}/v1/mcp-servers/{created['id']}/tools/slow", timeout=30).status_code == 200
    agent = create_agent(base, tools=["slow"])
    path = f"{base}/v1/mcp-servers/{created['id']}"
    for body, status, param in (({"config": {"mcp_server_type": "stdio", "server_url": mcp_sse.url}}, 422,
                                 "server_url"),
                                ({"config": {"command": "x"}}, 422, "command"),
                                ({"server_name": "clash-taken"}, 409, "server_name"),
                                ({"config": {"server_url": "ftp://x/mcp"}}, 422, "server_url")):
        if status == 409:
            _register(base, {"server_name": "clash-taken", "server_url": "http://127.0.0.1:9/mcp"})
        refused = httpx.patch(path, json=body, timeout=30)
        assert (refused.status_code, refused.json()["error"]["param"]) == (status, param), refused.text
        assert httpx.get(path).json() == created  # nothing of a refused update was kept
    assert httpx.patch(f"{base}/v1/mcp-servers/mcp_server-nope", json={"server_name": "x"}).status_code == 404
    # What a GET shows, sent back as is (secrets masked): the stored secrets are kept, not replaced by masks.
    shown = {k: v for k, v in httpx.get(path).json().items() if k not in ("id", "mcp_server_type")}
    assert httpx.patch(path, json=shown, timeout=30).json() == created
    assert server.rt.mcp.servers[created["id"]].auth_token == TOKEN

    # The server goes away: its registered tool fails as a tool result, the API answers 502.
    down = httpx.patch(path, json={"config": {"server_url": f"http://127.0.0.1:{free_port()}/mcp"}}, timeout=30)
    assert down.status_code == 200 and down.json()["auth_token"] == created["auth_token"]  # the token is kept
    assert httpx.get(f"{path}/tools", timeout=30).status_code == 502
    with pytest.raises(Exception, match="could not run"):
        server.call(server.rt.registry.get("slow").run(None, {"seconds": 0}))
    moved = httpx.patch(path, json={"server_name": "moved", "config": {"mcp_server_type": "sse",
                                                                       "server_url": mcp_sse.url}}, timeout=30)
    assert moved.status_code == 200, moved.text
    assert (moved.json()["type"], moved.json()["auth_token"]) == ("sse", None)  # a new type: a new connection
    assert server.call(server.rt.registry.get("slow").run(None, {"seconds": 0})) == "done sleeping"
    assert "slow" in [t["name"] for t in httpx.get(f"{base}/v1/agents/{agent}/tools").json()]
    assert server.rt.registry.get("slow").record["server_name"] == "moved"


def test_concurrent_registrations_on_one_server_keep_every_tool_after_a_restart(make_server, mcp_http: McpProcess,
                                                                                tmp_path) -> None:
    srv = make_server(str(tmp_path / "data"))
    created = _register(srv.base_url, {"server_name": "race", "server_url": mcp_http.url})
    names = ["add", "weather", "picture", "broken", "slow"]

    async def register_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(f"{srv.base_url}/v1/mcp-servers/{created['id']}/tools/{n}")
                                          for n in names))

    assert [r.status_code for r in asyncio.run(register_all())] == [200] * len(names)
    srv.stop()
    again = make_server(str(tmp_path / "data"), database_url=srv.settings.database_url)
    tools = {t["name"]: t["tool_type"] for t in httpx.get(f"{again.base_url}/v1/tools/", timeout=10).json()}
    assert all(tools.get(n) == "external_mcp" for n in names), tools


def test_a_server_with_no_mcp_server_never_imports_the_sdk(tmp_path) -> None:
    # The SDK costs about 1 s of start-up: a memproxy serving requests with no MCP server has not loaded it.
    code = (
        "import sys, threading, time, urllib.request, uvicorn\n"
        "from proxy.app import build_app\n"
        "from proxy.config import Settings\n"
        f"port = {free_port()}\n"
        f"app = build_app(Settings.load({{'data_dir': {str(tmp_path)!r}, 'port': port}}, environ={{}}))\n"
        "server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port, log_level='warning'))\n"
        "threading.Thread(target=server.run, daemon=True).start()\n"
        "while not server.started:\n"
        "    time.sleep(0.01)\n"
        "base = f'http://127.0.0.1:{port}/v1'\n"
        "assert urllib.request.urlopen(base + '/health').status == 200\n"
        "assert urllib.request.urlopen(base + '/mcp-servers/').read() == b'[]'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types')))\n"
        "server.should_exit = True\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
