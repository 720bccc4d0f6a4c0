"""Fixtures for the MCP tests: a real MCP server (tests/tools/mcp_server.py) in a subprocess of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

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
@pytest.fixture(scope="session")
def mcp_http() -> Iterator[McpProcess]:
    proc = start_mcp("streamable-http")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def mcp_sse() -> Iterator[McpProcess]:
    proc = start_mcp("sse")
    yield proc
    proc.stop()


@pytest.fixture
def mcp_factory() -> Iterator[Callable[[str], McpProcess]]:
    """Start MCP servers that a test may kill; all are stopped at teardown."""
    started: list[McpProcess] = []

    def start(transport: str = "streamable-http") -> McpProcess:
        proc = start_mcp(transport)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def stdio_body(name: str, **env: str) -> dict[str, object]:
    """The POST body registering the test server as a stdio server memproxy starts itself."""
    return {"server_name": name, "type": "stdio", "command": sys.executable, "args": [MCP_SERVER_SCRIPT, "stdio"],
            "env": env}
