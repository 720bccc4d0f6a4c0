"""A real MCP server for the MCP tests, built with the `mcp` SDK (MCPServer, FastMCP's v2 name).

Run: `python mcp_server.py stdio` or `python mcp_server.py streamable-http|sse`. Over HTTP it binds a free
port on 127.0.0.1 and prints `PORT <n>` on stdout once it listens, so the test waits on a line, not a sleep.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ImageContent, TextContent

server = MCPServer("memproxy-test", log_level="CRITICAL")
_seen_auth: list[str] = []


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def weather(city: str) -> dict[str, Any]:
    """Structured weather for a city."""
    return {"city": city, "forecast": "sunny", "celsius": 21}


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return "done sleeping"


@server.tool()
def broken(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"broken on purpose: {reason}")


@server.tool()
def picture() -> list[Any]:
    """Some text and an image."""
    return [TextContent(text="here is a picture"), ImageContent(data="iVBORw0KGgo=", mime_type="image/png")]


@server.tool()
def whoami() -> str:
    """The process id and the environment the server sees (names of variables, and MCP_TEST_VALUE)."""
    return f"pid={os.getpid()} value={os.environ.get('MCP_TEST_VALUE', '')} names={','.join(sorted(os.environ))}"


@server.tool()
def auth_seen(ctx: Context) -> str:
    """The Authorization and X-Custom headers this request carried."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", {}) or {}
    auth, custom = headers.get("authorization", ""), headers.get("x-custom", "")
    # Only the ends: the test checks the secrets arrived without writing them into the history.
    return f"auth={len(auth)}:{auth[-4:]} custom={len(custom)}:{custom[-4:]}"


@server.tool()
def exit_now() -> str:
    """Exit the server process at once (to test supervision)."""
    os._exit(3)


async def _serve_http(transport: str) -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    app = server.streamable_http_app() if transport == "streamable-http" else server.sse_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)

    async def announce() -> None:
        while not uv.started:
            await asyncio.sleep(0.01)
        print(f"PORT {sock.getsockname()[1]}", flush=True)

    asyncio.get_running_loop().create_task(announce())
    await uv.serve(sockets=[sock])


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "stdio":
        server.run("stdio")
    else:
        asyncio.run(_serve_http(mode))
