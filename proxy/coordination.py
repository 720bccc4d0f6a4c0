"""Per-agent turn locks: in-process by default, in Redis when several memproxy processes share a store.

A lock is taken as a `Lease`: besides holding the agent, it carries the lease's fencing token (a
number that grows with every lease of the agent; the store refuses a commit whose token is older than
one it has seen, so a holder that lost its lock cannot write over a newer turn), the agent's version
(the live cache reloads an agent whose version moved), and the idempotency record of the request.
The interface is `proxy.protocols.AgentLocks`; the Redis implementation is in proxy/redis_coordination.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from proxy.protocols import AgentLocks as AgentLocks  # declared with the other extension points

Release = Callable[[], Awaitable[None]]
# (agent id, version before, version after) for every agent a bump touched; None = the versions are unknown
Bumped = list[tuple[str, int | None, int]]
OnDrop = Callable[[dict[str, int] | None], None]  # agent -> new version; None = drop every cached agent


class LockTimeout(Exception):
    """The agent stayed busy for the whole wait."""


class CoordinationDown(Exception):
    """Redis did not answer: cross-process turns cannot be coordinated until it does."""


@dataclass
class Lease:
    """One held turn lock and what was read with it."""

    agent_id: str
    fence: int = 0  # 0: no fencing (one process)
    version: int | None = None  # the agent's version when the lock was taken (None: one process, no versions)
    prior: dict[str, Any] | None = None  # the idempotency record found for the request, if any
    joined: str | None = None  # the run of an equal request that was in flight while this one waited
    meta: dict[str, Any] | None = None  # the prompt metadata the agent's last holder compiled with
    tools_version: int | None = None  # the fleet's custom tools / MCP servers version (None: one process)
    _release: Callable[..., Awaitable[tuple[int | None, int | None]]] | None = field(default=None, repr=False)

    async def release(self, *, bump: bool = True, record: dict[str, Any] | None = None,
                      record_ttl: float = 0.0, meta: dict[str, Any] | None = None) -> tuple[int | None, int | None]:
        """Free the agent; bump its version (its state changed) and leave `record` as its idempotency record.

        Returns the version before and after the bump, or (None, None) without versions.
        """
        if self._release is None:
            return None, None
        release, self._release = self._release, None
        return await release(bump=bump, record=record, record_ttl=record_ttl, meta=meta)


class LocalAgentLocks:
    """An asyncio.Lock per agent: FIFO for waiters in this process.

    A lock lives only while someone holds or waits for it, so the map never outgrows the agents in flight.
    """

    shared = False

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # agent -> (lock, [holders + waiters])

    async def acquire(self, agent_id: str, timeout: float) -> Release:
        entry = self._locks.get(agent_id)
        if entry is None:
            entry = self._locks[agent_id] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            if users[0] == 1:
                # Nobody holds or waits for this agent: the lock is taken at once, so no timer is armed.
                await lock.acquire()
            else:
                async with asyncio.timeout(timeout):
                    await lock.acquire()
        except TimeoutError:
            self._leave(agent_id, users)
            raise LockTimeout(agent_id) from None
        except BaseException:  # cancelled while waiting
            self._leave(agent_id, users)
            raise

        async def release() -> None:
            lock.release()
            self._leave(agent_id, users)

        return release

    async def lease(self, agent_id: str, timeout: float, *, idem_key: str | None = None,
                    run: dict[str, Any] | None = None, record: dict[str, Any] | None = None,
                    record_ttl: float = 0.0) -> Lease:
        release = await self.acquire(agent_id, timeout)

        async def done(**_: Any) -> tuple[int | None, int | None]:
            await release()
            return None, None

        return Lease(agent_id, _release=done)

    def _leave(self, agent_id: str, users: list[int]) -> None:
        users[0] -= 1
        if users[0] == 0 and self._locks.get(agent_id, (None, None))[1] is users:
            del self._locks[agent_id]

    def __len__(self) -> int:
        return len(self._locks)

    async def changed(self, agent_ids: list[str]) -> Bumped:
        return []  # one process: its cache is the only one, and AgentMemory keeps it current itself

    async def running(self, run_id: str) -> dict[str, Any] | None:
        return None  # the runner's own map of runs in flight is complete

    async def tools_version(self) -> int:
        return 0  # one process: its tool registry is the only copy

    async def version(self, agent_id: str) -> int | None:
        return None  # one process: no versions

    async def running_runs(self, limit: int = 1000) -> list[dict[str, Any]]:
        return []

    async def record(self, agent_id: str, idem_key: str, value: dict[str, Any], ttl: float) -> None:
        return None

    def on_drop(self, callback: OnDrop) -> None:
        return None

    async def close(self) -> None:
        return None


def agent_locks(redis_url: str | None, *, prefix: str = "memproxy:", ttl: float = 15.0) -> AgentLocks:
    if not redis_url:
        return LocalAgentLocks()
    from proxy.redis_coordination import RedisAgentLocks

    return RedisAgentLocks(redis_url, prefix=prefix, ttl=ttl)


def __getattr__(name: str) -> Any:
    # `from proxy.coordination import RedisAgentLocks` keeps working; the class lives beside this module.
    if name == "RedisAgentLocks":
        from proxy.redis_coordination import RedisAgentLocks

        return RedisAgentLocks
    raise AttributeError(name)
