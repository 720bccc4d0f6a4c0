"""A tool upsert and an MCP server update acknowledged, then the server SIGKILLed at once: after a restart
both changes are there (the upsert's new code, the server's new name and URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from crash_harness import Launcher, Server

SOURCE = "def crash_upsert(n: int) -> int:\n    \"\"\"Echo.\n\n    Args:\n        n: A number.\n    \"\"\"\n    return {}\n"


def test_an_acknowledged_upsert_and_mcp_update_survive_a_kill_right_after(launcher: Launcher,
                                                                          upstream: tuple[str, Any],
                                                                          tmp_path: Path) -> None:
    base_url, _ = upstream
    server = Server(launcher, tmp_path / "data", base_url)
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            tool = http.put("/v1/tools/", json={"source_code": SOURCE.format("n")}).json()
            mcp = http.post("/v1/mcp-servers", json={"server_name": "crash-remote",
                                                     "server_url": "http://127.0.0.1:9/mcp"}).json()
            changed = http.put("/v1/tools/", json={"source_code": SOURCE.format("n + 1")})
            assert changed.status_code == 200 and changed.json()["id"] == tool["id"], changed.text
            moved = http.patch(f"/v1/mcp-servers/{mcp['id']}", json={
                "server_name": "crash-moved", "config": {"server_url": "http://127.0.0.1:10/mcp"}})
            assert moved.status_code == 200, moved.text
        server.kill()  # the instant both answers are in: nothing acknowledged may be lost
        server.start()
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            assert http.get(f"/v1/tools/{tool['id']}").json()["source_code"] == SOURCE.format("n + 1")
            got = http.get(f"/v1/mcp-servers/{mcp['id']}").json()
            assert (got["server_name"], got["server_url"]) == ("crash-moved", "http://127.0.0.1:10/mcp")
    finally:
        server.close()
