"""Fixtures for the MCP tests: a real MCP server (tests/tools/mcp_server.py) in a subprocess of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from mcp_support import McpProcess, start_mcp


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
