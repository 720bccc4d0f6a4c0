"""Custom tools and MCP servers kept coherent across processes: one fleet-wide tools version in Redis.

Every write of a custom tool or an MCP server (create, update, delete, an MCP tool registered) holds the
fleet's tools lock, starts from this process's registry brought up to date, and bumps the tools version
(`<prefix>ver:@tools`, announced on the change channel like an agent's version). Taking a turn lock reads
that version in the same Redis round trip as the agent's (no extra round trip per turn); a process whose
registry was loaded at another version reloads its custom tools and MCP servers from the store before the
turn. Announcements reload eagerly, so management reads are current too; they also check the version (one
GET) before answering. With one process (no Redis) none of this runs: the registry is the only copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator, Callable

from memory.mcp_servers import McpServer
from memory.models import Tool
from memory.store import Store
from proxy.coordination import AgentLocks, CoordinationDown, LockTimeout
from proxy.errors import APIError
from tools.custom import load_custom_tool
from tools.mcp import McpServers, mcp_tool_id
from tools.registry import ToolRegistry
from tools.sandbox import Sandbox

log = logging.getLogger("memproxy.coordination")

TOOLS = "@tools"  # the version key's "agent" (ver:@tools) and the name of the fleet's tools lock
_CONFIG = ("server_name", "type", "server_url", "command", "args", "env", "auth_header", "auth_token",
           "custom_headers")


class ToolSync:
    """This process's tool registry and MCP servers, and the fleet-wide tools version they were loaded at."""

    def __init__(self, store: Store, registry: ToolRegistry, mcp: McpServers, sandbox: Sandbox,
                 locks: AgentLocks, *, lock_timeout: float, spawn: Callable[..., Any]) -> None:
        self.store = store
        self.registry = registry
        self.mcp = mcp
        self.sandbox = sandbox
        self.locks = locks
        self.lock_timeout = lock_timeout
        self.spawn = spawn
        self.version: int | None = None  # None: unknown, the next lease reloads
        self.reloads = 0
        self._reloading = asyncio.Lock()  # held by a reload, and by a write from its current registry to its bump
        self._writer: asyncio.Task[Any] | None = None  # the task inside `writing`, which may reload without it

    @property
    def shared(self) -> bool:
        return self.locks.shared

    # --- reading the version --------------------------------------------------------------------
    async def catch_up(self, version: int | None) -> None:
        """Under a turn lease that read `version`: reload first if the registry was loaded at another one."""
        if self.shared and version is not None and version != self.version:
            await self.reload(version)

    async def current(self) -> None:
        """Before a management read or write: the registry as of the fleet's version now."""
        if not self.shared:
            return
        try:
            version = await self.locks.tools_version()
        except CoordinationDown as exc:  # reads keep working from this process's copy
            log.warning("%s; tools are served as this process last loaded them", exc)
            return
        await self.catch_up(version)

    def heard(self, versions: dict[str, int] | None) -> None:
        """An announcement on the change channel: reload now if it moved the tools version (None: missed some)."""
        if versions is None:
            self.version = None
            self.spawn(self._reload_quietly(None), name="tools-reload")
        elif TOOLS in versions and (self.version is None or versions[TOOLS] > self.version):  # late news: none
            self.spawn(self._reload_quietly(versions[TOOLS]), name="tools-reload")

    # --- writing ------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Around a tool or MCP server write: the tools lock (fleet-wide with Redis), a current registry, the bump.

        One write at a time also within a process: registering two tools of one MCP server at once cannot
        lose one (each reads the server's tools after the other's write).
        """
        try:
            release = await self.locks.acquire(TOOLS, self.lock_timeout)
        except LockTimeout:
            raise APIError(409, "tools are being changed by another request; retry when it finishes",
                           code="tools_busy") from None
        except CoordinationDown as exc:
            raise APIError(503, f"{exc}; tools and MCP servers cannot change until it answers again",
                           code="coordination_unavailable", headers={"Retry-After": "1"}) from None
        try:
            await self.current()
            async with self._reloading:  # no reload of older state lands between our write and our bump
                self._writer = asyncio.current_task()
                try:
                    yield
                except APIError as exc:
                    if exc.status >= 500 and self.shared:
                        await self.bump()  # it may have written part of its change: let every process look again
                    raise
                except BaseException:
                    if self.shared:
                        await self.bump()
                    raise
                finally:
                    self._writer = None
                if self.shared:
                    await self.bump()
        finally:
            await release()

    async def bump(self) -> None:
        bumped = await self.locks.changed([TOOLS])
        if bumped and bumped[0][1] == self.version:
            self.version = bumped[0][2]  # our registry holds our write and nothing was missed
        else:
            self.version = None  # another process wrote too, or Redis did not answer: reload at the next look

    # --- reloading ----------------------------------------------------------------------------
    async def _reload_quietly(self, version: int | None) -> None:
        try:
            await self.reload(version)
        except Exception as exc:  # noqa: BLE001 - the next lease or read tries again
            log.warning("could not reload tools and MCP servers: %s", type(exc).__name__)

    async def reload(self, version: int | None) -> None:
        """Bring the registry and MCP servers to the store's state, which is at least as new as `version`."""
        if self._writer is not None and self._writer is asyncio.current_task():
            await self._load(version)  # inside this process's own write (it holds the lock)
            return
        async with self._reloading:
            await self._load(version)

    async def _load(self, version: int | None) -> None:
        if version is not None and self.version is not None and version <= self.version:
            return  # versions only grow: already loaded at this one or past it
        tools = await self.store.list_tools()
        servers = await self.store.list_mcp_servers()
        self._custom(tools)
        await self._servers(servers)
        self.version = version
        self.reloads += 1

    def _custom(self, records: list[Tool]) -> None:
        stored = {record.name: record for record in records}
        for tool in self.registry.tools():
            if tool.kind == "custom" and tool.name not in stored:
                self.registry.remove(tool.name)
        for name, record in stored.items():
            held = self.registry.get(name)
            if held is not None and (held.kind == "builtin" or (held.kind == "custom" and held.record == record)):
                continue
            load_custom_tool(self.registry, record, self.sandbox)

    async def _servers(self, servers: list[McpServer]) -> None:
        stored = {server.id: server for server in servers}
        for server_id, server in list(self.mcp.servers.items()):
            fresh = stored.get(server_id)
            if fresh is None or _config(fresh) != _config(server):
                await self.mcp.remove(server_id)
            elif fresh.tools != server.tools:
                gone = {spec["name"] for spec in server.tools} - {spec["name"] for spec in fresh.tools}
                for name in gone:
                    tool = self.registry.get(name)
                    if tool is not None and tool.id == mcp_tool_id(server_id, name):
                        self.registry.remove(name)
        for server_id, server in stored.items():
            if server_id not in self.mcp.servers:
                self.mcp.add(server)
            self.mcp.servers[server_id] = server
            for spec in server.tools:
                taken = self.registry.get(spec["name"])
                tool = self.mcp.server_tool(server, spec)
                if taken is None or (taken.id == tool.id and taken != tool):
                    self.registry.add(tool)


def _config(server: McpServer) -> tuple[Any, ...]:
    return tuple(repr(getattr(server, name)) for name in _CONFIG)
