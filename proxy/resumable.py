"""Resumable runs: a run's SSE events kept in a Redis stream, numbered 1, 2, 3..., so any process can replay
them after a given event and then follow the run live until its end.

Layout (every key under the `MEMPROXY_REDIS_PREFIX`, both expiring `MEMPROXY_RESUMABLE_TTL` after the last write):

- `<prefix>runlog:<run_id>`      a hash: agent, surface, status (running | completed | failed), lock (the turn
                                 lock's value while the run holds it)
- `<prefix>runlog:<run_id>:events` a stream; entry id `0-<seq>`, field `d` = the event's bytes without its `id:` line

Events are written before they are sent (write-through): a client never holds an event the log lacks, so the
number it resumes from always exists. Only resumable runs touch Redis per event; other turns pay nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

from memory.models import new_id
from proxy.chat.protocol import DONE, KEEPALIVE
from proxy.errors import APIError

log = logging.getLogger("memproxy.resumable")

RESUMABLE_HEADER = "x-memproxy-resumable"
# Keep-alive of a numbered stream: a comment line with no blank line after it. Once an `id:` was seen, the
# OpenAI and Letta SDKs' SSE decoders turn a comment's blank line into an empty event and fail to parse it.
KEEPALIVE_LINE = b": keep-alive\n"
_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no", ""})

# Append a batch only while the run is running, so a run declared failed by a reader stays failed and
# ends exactly once. ARGV: ttl seconds, maxlen, final status ('' = still running), then seq, payload pairs.
_APPEND = """
if redis.call('hget', KEYS[1], 'status') ~= 'running' then return 0 end
for i = 4, #ARGV, 2 do
  redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-' .. ARGV[i], 'd', ARGV[i + 1])
end
redis.call('expire', KEYS[2], ARGV[1])
if ARGV[3] ~= '' then redis.call('hset', KEYS[1], 'status', ARGV[3]) end
redis.call('expire', KEYS[1], ARGV[1])
return 1
"""
# A reader found the run's process gone: end the log with an error event and [DONE], numbered after the last.
_FAIL = """
if redis.call('hget', KEYS[1], 'status') ~= 'running' then return 0 end
local last = redis.call('xrevrange', KEYS[2], '+', '-', 'COUNT', 1)
local seq = 0
if #last > 0 then seq = tonumber(string.match(last[1][1], '-(%d+)$')) end
redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-' .. (seq + 1), 'd', ARGV[3])
redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-' .. (seq + 2), 'd', ARGV[4])
redis.call('hset', KEYS[1], 'status', 'failed')
redis.call('expire', KEYS[1], ARGV[1])
redis.call('expire', KEYS[2], ARGV[1])
return 1
"""
# Remember which value of the agent's turn lock this run holds (KEYS: meta, lock key).
_ERROR_EVENTS = (b'data: {"error":', b'data: {"message_type":"error_message"')
_BIND = "redis.call('hset', KEYS[1], 'lock', redis.call('get', KEYS[2]) or '') return 1"


def wants_resumable(headers: Any) -> bool:
    """The `X-Memproxy-Resumable` header: 1/true/yes asks for a resumable run; anything unknown is a 400."""
    raw = headers.get(RESUMABLE_HEADER)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise APIError(400, "the X-Memproxy-Resumable header must be 1 or 0", param="X-Memproxy-Resumable",
                   code="invalid_header")


def unavailable(exc: BaseException) -> APIError:
    return APIError(503, f"resumable streams are unavailable: Redis did not answer ({type(exc).__name__}); "
                    "send the request without resuming, or retry when Redis is back", code="redis_unavailable")


async def open_resumable(runlog: RunLog | None, agent_id: str, surface: str,
                         error_bytes: Callable[[APIError, str], bytes], param: str) -> Publisher:
    """Register a resumable run before its turn starts: 400 without Redis, 503 when Redis does not answer."""
    if runlog is None:
        raise APIError(400, "resumable runs need Redis: start memproxy with MEMPROXY_REDIS_URL set",
                       param=param, code="resumable_unavailable")
    return await runlog.open(new_id("run"), agent_id, surface, error_bytes)


def turn_lock_key(locks: Any, agent_id: str) -> str | None:
    """The Redis key of the agent's turn lock (proxy.coordination.RedisAgentLocks), None for in-process locks."""
    prefix = getattr(locks, "prefix", None)
    return prefix + agent_id if isinstance(prefix, str) else None


class RunLog:
    """The Redis side of resumable runs, shared by every request of one process."""

    def __init__(self, url: str, *, prefix: str, ttl: float, max_events: int, locks: Any) -> None:
        import redis.asyncio as aioredis

        # A blocking read waits at most one keep-alive interval, well inside the socket timeout.
        self.client: Any = aioredis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=15.0)
        self.prefix = prefix
        self.ttl = max(1, int(ttl))
        self.max_events = max_events
        self.locks = locks
        self._append = self.client.register_script(_APPEND)
        self._fail = self.client.register_script(_FAIL)
        self._bind = self.client.register_script(_BIND)

    def meta_key(self, run_id: str) -> str:
        return f"{self.prefix}runlog:{run_id}"

    def events_key(self, run_id: str) -> str:
        return f"{self.prefix}runlog:{run_id}:events"

    async def open(self, run_id: str, agent_id: str, surface: str, error_bytes: Callable[[APIError, str], bytes]
                   ) -> Publisher:
        """Register a run about to start; 503 at once when Redis cannot take it."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.meta_key(run_id), mapping={"agent": agent_id, "surface": surface,
                                                          "status": "running"})
                pipe.expire(self.meta_key(run_id), self.ttl)
                await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - any Redis failure means we cannot promise a resumable run
            raise unavailable(exc) from None
        return Publisher(self, run_id, agent_id, error_bytes)

    async def meta(self, run_id: str) -> dict[str, str]:
        raw = await self.client.hgetall(self.meta_key(run_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def bounds(self, run_id: str) -> tuple[int, int]:
        """(first, last) event numbers still kept; (0, 0) for none."""
        key = self.events_key(run_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xrange(key, "-", "+", count=1)
            pipe.xrevrange(key, "+", "-", count=1)
            first, last = await pipe.execute()
        return (_seq(first[0][0]) if first else 0), (_seq(last[0][0]) if last else 0)

    async def read(self, run_id: str, after: int, count: int, block_ms: int) -> list[tuple[int, bytes]]:
        """Events after `after`, waiting up to `block_ms` (0: not at all) for the first one when none is there yet."""
        found = await self.client.xread({self.events_key(run_id): f"0-{after}"}, count=count, block=block_ms or None)
        if not found:
            return []
        return [(_seq(entry_id), fields[b"d"]) for entry_id, fields in found[0][1]]

    async def owner_alive(self, meta: dict[str, str]) -> bool:
        """Is the process running this turn still holding the agent's turn lock? (The one place that knows how.)"""
        key = turn_lock_key(self.locks, meta.get("agent", ""))
        held = meta.get("lock")
        if key is None or held is None:
            return True  # not bound to a lock (yet): nothing tells us it is gone
        value = await self.client.get(key)
        return value is not None and value.decode() == held

    async def fail(self, run_id: str, error: bytes) -> bool:
        """End a run whose process died; False when it had ended (or was failed by another reader) already."""
        keys = [self.meta_key(run_id), self.events_key(run_id)]
        return bool(await self._fail(keys=keys, args=[self.ttl, self.max_events, error, DONE]))

    async def close(self) -> None:
        await self.client.aclose()


def _seq(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.rsplit("-", 1)[1])


class Publisher:
    """Numbers one run's events, writes them to Redis in order and only then hands them to the live client."""

    def __init__(self, runlog: RunLog, run_id: str, agent_id: str,
                 error_bytes: Callable[[APIError, str], bytes]) -> None:
        self.runlog = runlog
        self.run_id = run_id
        self.agent_id = agent_id
        self.error_bytes = error_bytes
        self.seq = 0
        self.pending: list[Any] = []  # items for the client queue, in order; events are (seq, bytes, deliver)
        self.failed = False
        self.ended = False
        self.broken = False  # Redis failed mid-run: the live client still gets everything
        self.queue: TeeQueue | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None

    def attach(self, queue: TeeQueue) -> None:
        self.queue = queue
        self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"runlog-{self.run_id}")

    def put(self, item: Any) -> None:
        if self.ended:
            if item is None and self.queue is not None and (self._writer is None or self._writer.done()):
                self.queue.deliver(item)  # the end of the client's stream, after the writer finished
            elif item is None:
                self.pending.append(item)
                self._wake.set()
            return
        if isinstance(item, bytes) and item.startswith(b"data:"):
            if item.startswith(_ERROR_EVENTS):
                self.failed = True
            self.seq += 1
            self.pending.append((self.seq, item, True))
            if item == DONE:
                self.ended = True
        elif isinstance(item, APIError):
            # Failed before a byte was sent: the live client gets the HTTP error, the log the same as events.
            self.failed = True
            self.seq += 2
            self.pending += [(self.seq - 1, self.error_bytes(item, self.run_id), False), (self.seq, DONE, False), item]
            self.ended = True
        else:
            self.pending.append(KEEPALIVE_LINE if item == KEEPALIVE else item)
        self._idle.clear()
        self._wake.set()

    def mark_failed(self) -> None:
        self.failed = True

    async def bind_lock(self) -> None:
        """Called holding the agent's turn lock: remember its value, so readers can tell when the holder is gone."""
        key = turn_lock_key(self.runlog.locks, self.agent_id)
        if key is None:
            return
        try:
            await self.runlog._bind(keys=[self.runlog.meta_key(self.run_id), key])
        except Exception as exc:  # noqa: BLE001 - the run goes on; readers then treat its owner as alive
            raise unavailable(exc) from None

    async def drain(self) -> None:
        """Wait until everything put so far is in Redis and handed to the client (before the lock is released)."""
        if self._writer is not None and not self._writer.done():
            await self._idle.wait()

    async def discard(self) -> None:
        """The request did not start a run after all (a replay, a refusal): forget its registration."""
        if self._writer is not None:
            self._writer.cancel()
        try:
            await self.runlog.client.delete(self.runlog.meta_key(self.run_id))
        except Exception as exc:  # noqa: BLE001 - it expires by itself
            log.warning("could not drop the resumable registration of %s: %s", self.run_id, type(exc).__name__)

    async def _write(self) -> None:
        assert self.queue is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self.pending = self.pending, []
            events = [x for x in batch if isinstance(x, tuple)]
            done = any(p == DONE for _, p, _ in events)
            if events and not self.broken:
                await self._store(events, ("failed" if self.failed else "completed") if done else "")
            for item in batch:
                if not isinstance(item, tuple):
                    self.queue.deliver(item)
                elif item[2]:
                    self.queue.deliver(b"id: %d\n" % item[0] + item[1])
            if not self.pending:
                self._idle.set()
            if done and not self.pending:
                return

    async def _store(self, events: list[tuple[int, bytes, bool]], final: str) -> None:
        args: list[Any] = [self.runlog.ttl, self.runlog.max_events, final]
        for seq, payload, _ in events:
            args += [seq, payload]
        try:
            await self.runlog._append(keys=[self.runlog.meta_key(self.run_id), self.runlog.events_key(self.run_id)],
                                      args=args)
        except Exception as exc:  # noqa: BLE001 - the turn and its live client go on; resuming it will fail
            self.broken = True
            log.warning("run %s: Redis refused its events (%s); it cannot be resumed", self.run_id,
                        type(exc).__name__)


class TeeQueue(asyncio.Queue[Any]):
    """The sink's queue for a resumable run: what the sink puts goes through the publisher first."""

    def __init__(self, publisher: Publisher) -> None:
        super().__init__()
        self.publisher = publisher
        publisher.attach(self)

    def put_nowait(self, item: Any) -> None:
        self.publisher.put(item)

    def deliver(self, item: Any) -> None:
        super().put_nowait(item)

    @property
    def next_seq(self) -> int:
        return self.publisher.seq + 1


async def follow(runlog: RunLog, run_id: str, after: int, *, keepalive: float, batch: int,
                 gone_error: bytes, on_failed: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[bytes]:
    """The run's events after `after` with their `id:` lines, then live ones until [DONE].

    When nothing arrives for a keep-alive interval and the run's turn lock is no longer held by its
    process (it died and the lock's TTL ran out), the run is failed: an error event and [DONE] end it.
    """
    last = after
    try:
        async for chunk in _follow(runlog, run_id, after, keepalive, batch, gone_error, on_failed):
            last = chunk[1]
            yield chunk[0]
    except Exception as exc:  # noqa: BLE001 - Redis went away under a follower
        # Closed without [DONE]: the run has not ended as far as we know; resume again after the last id.
        log.warning("run %s: following it failed after event %d (%s)", run_id, last, type(exc).__name__)


async def _follow(runlog: RunLog, run_id: str, after: int, keepalive: float, batch: int, gone_error: bytes,
                  on_failed: Callable[[], Awaitable[None]] | None) -> AsyncIterator[tuple[bytes, int]]:
    block_ms = max(1, int(keepalive * 1000))
    last = after
    suspect = False
    while True:
        entries = await runlog.read(run_id, last, batch, block_ms)
        if entries:
            suspect = False
            out = []
            for seq, payload in entries:
                out.append(b"id: %d\n" % seq + payload)
                last = seq
                if payload == DONE:
                    yield b"".join(out), last
                    return
            yield b"".join(out), last
            continue
        meta = await runlog.meta(run_id)
        if not meta:
            yield gone_error + DONE, last  # expired while followed: nothing more will come
            return
        if meta.get("status") != "running":
            # Its end is written with its last events, at once: one more look finds them, or there are none.
            if not await runlog.read(run_id, last, 1, 0):
                return
            continue
        if not await runlog.owner_alive(meta):
            # Seen twice in a row, an interval apart: a turn that just ended has flushed its end by then.
            if suspect and await runlog.fail(run_id, gone_error):
                log.warning("run %s: its process is gone (turn lock expired); marked failed", run_id)
                if on_failed is not None:
                    try:
                        await on_failed()
                    except Exception as exc:  # noqa: BLE001 - the stream still ends as the log says
                        log.error("run %s: could not store it as failed: %r", run_id, exc)
            suspect = True
        yield KEEPALIVE_LINE, last
