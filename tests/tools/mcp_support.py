"""The real MCP server the tool tests talk to (tests/tools/mcp_server.py), started in a subprocess of its own.

Importable by the test modules (a module of its own: `conftest` names another suite's conftest when several
folders are collected in one run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

MCP_SERVER_SCRIPT = os.path.join(os.path.dirname(__file__), "mcp_server.py")


@dataclass
class McpProcess:
    process: subprocess.Popen[str]
    url: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_mcp(transport: str) -> McpProcess:
    """The test MCP server over "streamable-http" or "sse" on a free port; returns once it listens."""
    process = subprocess.Popen([sys.executable, MCP_SERVER_SCRIPT, transport], stdout=subprocess.PIPE, text=True,
                               stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    line = process.stdout.readline()  # "PORT <n>", printed once uvicorn listens
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"the MCP test server did not start: {line!r}")
    port = int(line.split()[1])
    path = "/mcp" if transport == "streamable-http" else "/sse"
    return McpProcess(process, f"http://127.0.0.1:{port}{path}")


# One of each for the whole session: the servers are stateless, and each memproxy server has its own sessions.


def stdio_body(name: str, **env: str) -> dict[str, object]:
    """The POST body registering the test server as a stdio server memproxy starts itself."""
    return {"server_name": name, "type": "stdio", "command": sys.executable, "args": [MCP_SERVER_SCRIPT, "stdio"],
            "env": env}
