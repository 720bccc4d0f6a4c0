"""Per-agent turn locks: in-process by default, in Redis when several memproxy processes share a store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, Awaitable, Callable, Protocol

log = logging.getLogger("memproxy.coordination")

Release = Callable[[], Awaitable[None]]

# Delete the key only if we still own it: a lock that expired and was taken by another process
# must not be released by us.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_EXTEND = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) "
           "else return 0 end")


class LockTimeout(Exception):
    """The agent stayed busy for the whole wait."""


class AgentLocks(Protocol):
    """One turn at a time per agent."""

    async def acquire(self, agent_id: str, timeout: float) -> Release: ...

    async def close(self) -> None: ...


class LocalAgentLocks:
    """An asyncio.Lock per agent: FIFO for waiters in this process.

    A lock lives only while someone holds or waits for it, so the map never outgrows the agents in flight.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # agent -> (lock, [holders + waiters])

    async def acquire(self, agent_id: str, timeout: float) -> Release:
        entry = self._locks.get(agent_id)
        if entry is None:
            entry = self._locks[agent_id] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
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

    def _leave(self, agent_id: str, users: list[int]) -> None:
        users[0] -= 1
        if users[0] == 0 and self._locks.get(agent_id, (None, None))[1] is users:
            del self._locks[agent_id]

    def __len__(self) -> int:
        return len(self._locks)

    async def close(self) -> None:
        return None


class RedisAgentLocks:
    """A Redis key per busy agent, held with a token and kept alive while the turn runs."""

    def __init__(self, url: str, *, ttl: float = 30.0, poll: float = 0.01, prefix: str = "memproxy:turn:") -> None:
        import redis.asyncio as aioredis

        self.client: Any = aioredis.Redis.from_url(url)
        self.ttl_ms = int(ttl * 1000)
        self.poll = poll
        self.prefix = prefix
        self.local = LocalAgentLocks()  # waiters in this process queue locally, not by polling Redis

    async def acquire(self, agent_id: str, timeout: float) -> Release:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        release_local = await self.local.acquire(agent_id, timeout)
        key, token = self.prefix + agent_id, uuid.uuid4().hex
        try:
            delay = self.poll
            while not await self.client.set(key, token, nx=True, px=self.ttl_ms):
                if loop.time() + delay > deadline:
                    raise LockTimeout(agent_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
        except BaseException:
            await release_local()
            raise
        keeper = loop.create_task(self._keep(key, token))

        async def release() -> None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            try:
                await self.client.eval(_RELEASE, 1, key, token)
            except Exception as exc:  # noqa: BLE001 - the key expires by itself; never fail the turn here
                log.warning("could not release the Redis lock of %s: %s", agent_id, type(exc).__name__)
            await release_local()

        return release

    async def _keep(self, key: str, token: str) -> None:
        """Extend the key while the turn runs, so a long turn keeps it and a dead process loses it."""
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await self.client.eval(_EXTEND, 1, key, token, self.ttl_ms):
                    log.warning("lost the Redis turn lock %s", key)
                    return
            except Exception as exc:  # noqa: BLE001 - keep trying; the TTL bounds the damage
                log.warning("could not extend the Redis lock %s: %s", key, type(exc).__name__)

    async def close(self) -> None:
        await self.client.aclose()


def agent_locks(redis_url: str | None, ttl: float = 30.0) -> AgentLocks:
    return RedisAgentLocks(redis_url, ttl=ttl) if redis_url else LocalAgentLocks()
