"""One pooled MCP client session per MCP server, over streamable HTTP, SSE or stdio.

Each connection is owned by one background task, which enters the SDK's transport and `Client` contexts and
holds them (anyio requires a context to be left by the task that entered it); calls from any turn share the
session. Remote servers are connected on first use and again after a failure. stdio servers are started by
memproxy and supervised: when the process exits it is started again after a backoff (doubling from
`BACKOFF_MIN` to `BACKOFF_MAX`, reset once a process has stayed up for `STABLE_AFTER` seconds).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from memory.mcp_servers import McpServer
from tools.mcp import McpUnavailable

log = logging.getLogger("memproxy")

BACKOFF_MIN = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0


@asynccontextmanager
async def _watched(inner: AbstractAsyncContextManager[Any], ended: asyncio.Event) -> AsyncIterator[Any]:
    """The transport's streams, with `ended` set when the server side closes its stream (e.g. a process exit)."""
    async with inner as (read, write):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def pump() -> None:
            try:
                async with send:
                    async for item in read:
                        await send.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass
            finally:
                ended.set()

        async with anyio.create_task_group() as group:
            group.start_soon(pump)
            try:
                yield receive, write
            finally:
                group.cancel_scope.cancel()


def _transport(server: McpServer, connect_timeout: float) -> AbstractAsyncContextManager[Any]:
    if server.type == "stdio":
        # A clean environment: the SDK's short list (PATH, HOME, USER, SHELL, TERM, LOGNAME) plus the configured
        # variables; the server's stderr is discarded (it may print its environment).
        params = StdioServerParameters(command=server.command or "", args=list(server.args), env=dict(server.env))
        return stdio_client(params, errlog=_devnull())
    if server.type == "sse":
        return sse_client(server.server_url or "", headers=server.headers(), timeout=connect_timeout)
    client = httpx2.AsyncClient(headers=server.headers(), timeout=httpx2.Timeout(connect_timeout, read=None))
    return _owning(client, streamable_http_client(server.server_url or "", http_client=client))


_DEVNULL: list[Any] = []


def _devnull() -> Any:
    if not _DEVNULL:
        _DEVNULL.append(open(os.devnull, "w"))  # noqa: SIM115 - one handle for the process's life
    return _DEVNULL[0]


@asynccontextmanager
async def _owning(client: httpx2.AsyncClient, inner: AbstractAsyncContextManager[Any]) -> AsyncIterator[Any]:
    async with client:
        async with inner as streams:
            yield streams


class McpConnection:
    """The shared session to one MCP server; `close()` ends it (and stops a stdio server's process)."""

    def __init__(self, server: McpServer, *, connect_timeout: float = 10.0) -> None:
        self.server = server
        self.connect_timeout = connect_timeout
        self.restarts = 0  # stdio processes started again after an exit
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()  # set (and replaced) whenever the session comes or goes
        self._gone = asyncio.Event()  # set when the current session ended or a call found it broken
        self._stop = asyncio.Event()
        self._closed = False
        self._failure = ""

    @property
    def supervised(self) -> bool:
        return self.server.type == "stdio"

    def start(self) -> None:
        """Start the owner task (a stdio server's supervisor runs from here until close)."""
        if self._owner is None or self._owner.done():
            self._owner = asyncio.get_running_loop().create_task(
                self._supervise() if self.supervised else self._hold_once(), name=f"mcp-{self.server.id}")

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def session(self) -> Client:
        """The live session: connecting if there is none, or waiting for a restarting stdio server."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        started = False
        while True:
            if self._closed:
                raise McpUnavailable("the MCP server was removed")
            client = self._client
            if client is not None and not self._gone.is_set():
                return client
            if self._owner is None or self._owner.done():
                if started:  # the connection this call asked for failed
                    raise McpUnavailable(self._failure or "the MCP server is not connected")
                self.start()
                started = True
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                detail = f" ({self._failure})" if self._failure else ""
                raise McpUnavailable(f"no connection to the MCP server within {self.connect_timeout:g} s{detail}")
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def scrub(self, text: str) -> str:
        """`text` with every secret of the server's record masked (error texts may echo headers or URLs)."""
        for secret in self.server.secrets():
            text = text.replace(secret, "****")
        return text

    def broken(self) -> None:
        """A call failed in a way that says the session is gone: the next call reconnects."""
        self._gone.set()

    async def list_tools(self, timeout: float) -> list[mcp_types.Tool]:
        async def work() -> list[mcp_types.Tool]:
            client = await self.session()
            tools: list[mcp_types.Tool] = []
            cursor: str | None = None
            for _ in range(100):  # a paginator that never ends must not hang the request
                page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools

        return await self._guarded(work(), timeout, "listing the tools")

    async def call_tool(self, name: str, arguments: dict[str, Any], timeout: float) -> mcp_types.CallToolResult:
        async def work() -> mcp_types.CallToolResult:
            client = await self.session()
            return await client.call_tool(name, arguments, read_timeout_seconds=timeout)

        return await self._guarded(work(), timeout, f"calling `{name}`")

    async def _guarded(self, work: Any, timeout: float, what: str) -> Any:
        try:
            return await asyncio.wait_for(work, timeout)
        except asyncio.TimeoutError:
            # A slow tool is not a dead server: the session stays, only this call is given up.
            raise McpUnavailable(f"the MCP server did not answer {what} within {timeout:g} s") from None
        except McpUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - transport failures take many shapes
            # A remote session that failed is dropped (the next call reconnects) unless the server answered
            # the request itself; a stdio session ends with its process, which the supervisor restarts.
            answered = isinstance(exc, MCPError) and exc.code == mcp_types.INVALID_PARAMS
            if not self.supervised and not answered:
                self.broken()
            raise McpUnavailable(self.scrub(f"the MCP server failed while {what}: {_describe(exc)}")) from None

    async def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._notify()
        owner = self._owner
        if owner is not None:
            try:
                await asyncio.wait_for(asyncio.shield(owner), 10.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - closing must finish
                owner.cancel()
                await asyncio.gather(owner, return_exceptions=True)

    # --- the owner task -----------------------------------------------------------------------
    async def _hold_once(self) -> None:
        """Connect, hold the session until it ends, breaks, or the connection is closed."""
        ended = self._gone = asyncio.Event()
        try:
            async with Client(_watched(_transport(self.server, self.connect_timeout), ended)) as client:
                self._client = client
                self._failure = ""
                self._notify()
                waits = [asyncio.ensure_future(e.wait()) for e in (ended, self._stop)]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
        except Exception as exc:  # noqa: BLE001 - a failed connection is reported to the callers
            self._failure = self.scrub(f"could not connect to the MCP server: {_describe(exc)}")
            log.warning("MCP server %s (%s): %s", self.server.server_name, self.server.id, self._failure)
        finally:
            self._client = None
            self._notify()  # wake waiters: they see no session and wait for the next one, or fail

    async def _supervise(self) -> None:
        delay = BACKOFF_MIN
        while not self._stop.is_set():
            started = time.monotonic()
            await self._hold_once()
            if self._stop.is_set():
                break
            delay = BACKOFF_MIN if time.monotonic() - started >= STABLE_AFTER else delay
            log.warning("MCP server %s (%s) is not running; starting it again in %.1f s",
                        self.server.server_name, self.server.id, delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                break
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, BACKOFF_MAX)
            self.restarts += 1


def _describe(exc: BaseException) -> str:
    """A short description of a failure; exception groups are unwrapped to their first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
