"""Turn locks, fencing tokens, agent versions, idempotency records and runs in flight, in Redis.

Every key starts with the configured prefix (MEMPROXY_REDIS_PREFIX):

    turn:<agent>        the lock: a random owner id, PX = the lock TTL, renewed every third of it
    fence:<agent>       the last fencing token handed out for the agent
    ver:<agent>         the agent's version, bumped after every commit that touches the agent
    ver:@tools          the custom tools' and MCP servers' version, bumped after each of their writes
    run:<run>           a run in flight (JSON), as long as its lock is held
    idem:<agent>:<key>  a request's idempotency record: {"run", "state": running|done|failed, "until", "ended"}
    running             sorted set of the runs in flight (for listing them)
    meta:<agent>        the prompt metadata the agent's last turn compiled with (a day; keeps prompts byte-stable)
    changed             pub/sub channel: "agent=version,..." after each bump (eager cache drops; @tools too)

Tokens and versions come from one rule, `max(INCR, Redis clock in microseconds)`: they grow with every
lease even if Redis restarts empty, so the store's fence and the caches' versions never go back.
A lease costs two round trips (take, release) plus one renewal per TTL/3 of a long turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from typing import Any, Awaitable, Callable, TypeVar

import orjson

from memory.backends import redact_url
from proxy.coordination import Bumped, CoordinationDown, Lease, LocalAgentLocks, LockTimeout, OnDrop, Release

log = logging.getLogger("memproxy.coordination")
T = TypeVar("T")

# Lua helper: the next token of a counter key, never below the Redis clock (survives a Redis restart empty).
_NEXT = """
local function next_of(key)
  local t = redis.call('time')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local value = redis.call('incr', key)
  if value < now then
    redis.call('set', key, string.format('%d', now))
    value = now
  end
  return value
end
"""

# KEYS: lock, fence, ver, idem, run, running (zset of runs in flight), meta, tools version
# ARGV: owner, ttl_ms, run json ('' = none), check idem ('1'/'0'), idem record json ('' = none), its ttl ms, run id
_TAKE = _NEXT + """
local prior = false
if ARGV[4] == '1' then prior = redis.call('get', KEYS[4]) end
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, prior, false, false, false}
end
local fence = next_of(KEYS[2])
if ARGV[3] ~= '' then
  redis.call('set', KEYS[5], ARGV[3], 'PX', ARGV[2])
  redis.call('zadd', KEYS[6], fence, ARGV[7])
end
if not prior and ARGV[5] ~= '' then redis.call('set', KEYS[4], ARGV[5], 'PX', ARGV[6]) end
return {fence, prior, redis.call('get', KEYS[3]), redis.call('get', KEYS[7]), redis.call('get', KEYS[8])}
"""

# KEYS: lock, ver, run, idem, running, meta
# ARGV: owner, bump '1'/'0', record json ('' = none), record ttl ms, channel, agent, run id ('' = none),
#       prompt metadata json ('' = none)
_GIVE = _NEXT + """
local held = 0
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  held = 1
end
redis.call('del', KEYS[3])
if ARGV[7] ~= '' then redis.call('zrem', KEYS[5], ARGV[7]) end
if ARGV[8] ~= '' then redis.call('set', KEYS[6], ARGV[8], 'EX', 86400) end
if ARGV[3] ~= '' then redis.call('set', KEYS[4], ARGV[3], 'PX', ARGV[4]) end
local old, new = false, false
if ARGV[2] == '1' then
  old = redis.call('get', KEYS[2])
  new = next_of(KEYS[2])
  redis.call('publish', ARGV[5], ARGV[6] .. '=' .. string.format('%d', new))
end
return {held, old, new}
"""

# KEYS: version keys   ARGV: channel, then the agent ids in KEYS' order
_BUMP = _NEXT + """
local out, parts = {}, {}
for i, key in ipairs(KEYS) do
  local old = redis.call('get', key) or '0'
  local new = next_of(key)
  out[#out + 1] = old
  out[#out + 1] = new
  parts[#parts + 1] = ARGV[i + 1] .. '=' .. string.format('%d', new)
end
redis.call('publish', ARGV[1], table.concat(parts, ','))
return out
"""

# KEYS: lock, run   ARGV: owner, ttl_ms
_KEEP = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  redis.call('pexpire', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class RedisAgentLocks:
    """A Redis key per busy agent, held with an owner id and kept alive while the turn runs."""

    shared = True

    def __init__(self, url: str, *, ttl: float = 15.0, poll: float = 0.005, prefix: str = "memproxy:") -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # Short timeouts and one retry (a pooled connection from before a Redis restart fails once): a turn
        # fails fast with 503 when Redis is down instead of hanging.
        self.client: Any = aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0,
                                                   retry=Retry(NoBackoff(), 1))
        self.where = redact_url(url)
        self.ttl_ms = int(ttl * 1000)
        self.poll = poll
        self.base = prefix
        self.prefix = prefix + "turn:"  # the lock keys
        self.channel = prefix + "changed"
        self.local = LocalAgentLocks()  # waiters in this process queue locally, not by polling Redis
        self.unannounced: set[str] = set()  # agents whose bump failed: announced at the next chance
        self._take = self.client.register_script(_TAKE)
        self._give = self.client.register_script(_GIVE)
        self._bump = self.client.register_script(_BUMP)
        self._keep_script = self.client.register_script(_KEEP)
        self._listener: asyncio.Task[None] | None = None
        self._on_drop: OnDrop | None = None

    # --- keys -------------------------------------------------------------------------------
    def idem_key(self, agent_id: str, key: str) -> str:
        digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        return f"{self.base}idem:{agent_id}:{digest}"

    async def _call(self, what: str, work: Callable[[], Awaitable[T]]) -> T:
        import redis.exceptions

        try:
            return await work()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise CoordinationDown(f"Redis at {self.where} did not answer ({what}): {type(exc).__name__}") from None

    # --- leases -----------------------------------------------------------------------------
    async def lease(self, agent_id: str, timeout: float, *, idem_key: str | None = None,
                    run: dict[str, Any] | None = None, record: dict[str, Any] | None = None,
                    record_ttl: float = 0.0) -> Lease:
        """Take the agent's lock; with `idem_key`, read its record and (if there is none) leave `record` there."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        release_local = await self.local.acquire(agent_id, timeout)
        owner = uuid.uuid4().hex
        keys = [self.prefix + agent_id, f"{self.base}fence:{agent_id}", f"{self.base}ver:{agent_id}",
                self.idem_key(agent_id, idem_key) if idem_key else f"{self.base}idem:-",
                f"{self.base}run:{run['id']}" if run else f"{self.base}run:-", self.base + "running",
                f"{self.base}meta:{agent_id}", f"{self.base}ver:@tools"]
        run_id = str(run["id"]) if run else ""
        args: list[bytes | str | int] = [owner, self.ttl_ms, orjson.dumps(run) if run else b"", "1" if idem_key else "0",
                orjson.dumps(record) if record else b"", max(1, int(record_ttl * 1000)), run_id]
        joined: str | None = None
        try:
            if self.unannounced:
                await self._announce()
            delay = self.poll
            while True:
                fence, prior_raw, version, meta, tools = await self._call("taking a turn lock",
                                                                   lambda: self._take(keys, args))
                prior = orjson.loads(prior_raw) if prior_raw else None
                if fence:
                    break
                if prior is not None and prior.get("state") == "running":
                    joined = prior.get("run")  # an equal request is in flight elsewhere: replay it once it ends
                if loop.time() + delay > deadline:
                    raise LockTimeout(agent_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
        except BaseException:
            await release_local()
            raise
        keeper = loop.create_task(self._keep(keys[0], keys[4], owner), name=f"lock-keeper-{agent_id}")

        async def give(*, bump: bool, record: dict[str, Any] | None, record_ttl: float,
                       meta: dict[str, Any] | None) -> tuple[int | None, int | None]:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            give_keys = [keys[0], keys[2], keys[4], keys[3], keys[5], keys[6]]
            give_args: list[bytes | str | int] = [owner, "1" if bump else "0", orjson.dumps(record) if record else b"",
                         max(1, int(record_ttl * 1000)), self.channel, agent_id, run_id,
                         orjson.dumps(meta) if meta else b""]
            try:
                held, old, new = await self._call("releasing a turn lock", lambda: self._give(give_keys, give_args))
            except CoordinationDown as exc:  # the key expires by itself; never fail the turn here
                log.warning("could not release the turn lock of %s: %s", agent_id, exc)
                if bump:
                    self.unannounced.add(agent_id)
                return None, None
            finally:
                await release_local()
            if not held:
                log.warning("the turn lock of %s had expired before its release", agent_id)
            return (_int(old) or 0, int(new)) if bump else (None, None)

        return Lease(agent_id, fence=int(fence), version=_int(version) or 0, prior=prior, joined=joined,
                     meta=orjson.loads(meta) if meta else None, tools_version=_int(tools) or 0, _release=give)

    async def acquire(self, agent_id: str, timeout: float) -> Release:
        lease = await self.lease(agent_id, timeout)

        async def release() -> None:
            await lease.release(bump=False)

        return release

    async def _keep(self, key: str, run_key: str, owner: str) -> None:
        """Extend the lock while the turn runs, so a long turn keeps it and a dead process loses it."""
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await self._keep_script([key, run_key], [owner, self.ttl_ms]):
                    log.warning("lost the Redis turn lock %s", key)
                    return
            except Exception as exc:  # noqa: BLE001 - keep trying; the TTL and the fence bound the damage
                log.warning("could not extend the Redis lock %s: %s", key, type(exc).__name__)

    # --- versions ---------------------------------------------------------------------------
    async def changed(self, agent_ids: list[str]) -> Bumped:
        """Bump the versions of agents whose stored state changed, and tell every process."""
        ids = list(dict.fromkeys(agent_ids))
        if not ids:
            return []
        try:
            flat = await self._call("announcing a change", lambda: self._bump(
                [f"{self.base}ver:{a}" for a in ids], [self.channel, *ids]))
        except CoordinationDown as exc:
            log.warning("%s; other processes will reload %d agent(s) once it answers", exc, len(ids))
            self.unannounced.update(ids)
            return []
        return [(agent, int(flat[2 * i]), int(flat[2 * i + 1])) for i, agent in enumerate(ids)]

    async def version(self, agent_id: str) -> int | None:
        """The agent's version now (0 before its first bump); None when Redis does not answer (the lease decides)."""
        try:
            return _int(await self._call("reading an agent's version",
                                         lambda: self.client.get(f"{self.base}ver:{agent_id}"))) or 0
        except CoordinationDown:
            return None

    async def tools_version(self) -> int:
        """The fleet's custom tools and MCP servers version (proxy/tool_sync.py); 0 before any write."""
        return _int(await self._call("reading the tools version",
                                     lambda: self.client.get(f"{self.base}ver:@tools"))) or 0

    async def _announce(self) -> None:
        pending, self.unannounced = list(self.unannounced), set()
        if pending and not await self.changed(pending):
            raise CoordinationDown(f"Redis at {self.where} did not answer (announcing earlier changes)")

    # --- runs and idempotency records ---------------------------------------------------------
    async def running(self, run_id: str) -> dict[str, Any] | None:
        raw = await self._call("reading a run", lambda: self.client.get(f"{self.base}run:{run_id}"))
        return orjson.loads(raw) if raw else None

    async def running_runs(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Runs in flight on any process, newest first; entries whose holder died (key expired) are dropped."""
        ids = await self._call("listing runs", lambda: self.client.zrevrange(self.base + "running", 0, limit - 1))
        if not ids:
            return []
        raws = await self._call("listing runs", lambda: self.client.mget(
            [f"{self.base}run:{i.decode()}" for i in ids]))
        gone = [i for i, raw in zip(ids, raws) if raw is None]
        if gone:
            await self._call("listing runs", lambda: self.client.zrem(self.base + "running", *gone))
        return [orjson.loads(raw) for raw in raws if raw is not None]

    async def record(self, agent_id: str, idem_key: str, value: dict[str, Any], ttl: float) -> None:
        await self._call("writing an idempotency record", lambda: self.client.set(
            self.idem_key(agent_id, idem_key), orjson.dumps(value), px=max(1, int(ttl * 1000))))

    # --- eager drops ------------------------------------------------------------------------
    def on_drop(self, callback: OnDrop) -> None:
        """Call `callback` with every announced change (and None after losing Redis: drop everything)."""
        self._on_drop = callback
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="redis-changes")

    async def _listen(self) -> None:
        lost = False
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if lost and self._on_drop is not None:
                    self._on_drop(None)  # changes made while we were cut off were not heard: forget them all
                lost = False
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None or self._on_drop is None:
                        continue
                    data = message["data"].decode() if isinstance(message["data"], bytes) else str(message["data"])
                    versions = {}
                    for part in data.split(","):
                        agent, _, version = part.partition("=")
                        if version.isdigit():
                            versions[agent] = int(version)
                    self._on_drop(versions)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis went away: resubscribe, then drop the whole cache
                if not lost:
                    log.warning("lost the Redis change channel: %s", type(exc).__name__)
                lost = True
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        await self.client.aclose()
