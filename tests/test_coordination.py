"""Turn locks in Redis: one turn per agent across processes, kept alive while held, lost with the holder."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from helpers import create_agent, sdk, sim_headers
from memory.agents import AgentMemory
from memory.duckdb_store import DuckDBStore
from memory.models import Agent, new_id
from proxy.chat.fleet import current
from proxy.coordination import LocalAgentLocks, LockTimeout, RedisAgentLocks


def drop_keys(redis_url: str, prefix: str) -> None:
    direct = redis.Redis.from_url(redis_url)
    keys = list(direct.scan_iter(match=prefix + "*"))
    if keys:
        direct.delete(*keys)
    direct.close()


async def test_second_holder_waits_then_gets_the_lock(redis_url: str) -> None:
    prefix = "memproxy-test-waits:"
    a, b = RedisAgentLocks(redis_url, prefix=prefix), RedisAgentLocks(redis_url, prefix=prefix)  # two "processes"
    agent = "agent-00000000-0000-4000-8000-00000000000a"
    try:
        release = await a.acquire(agent, timeout=1)
        with pytest.raises(LockTimeout):
            await b.acquire(agent, timeout=0.2)
        waiter = asyncio.create_task(b.acquire(agent, timeout=5))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        await release()
        release_b = await asyncio.wait_for(waiter, 5)
        await release_b()
    finally:
        drop_keys(redis_url, prefix)
        await a.close()
        await b.close()


async def test_held_lock_outlives_its_ttl_and_dead_holders_expire(redis_url: str) -> None:
    prefix = "memproxy-test-ttl:"
    holder = RedisAgentLocks(redis_url, ttl=0.3, prefix=prefix)
    other = RedisAgentLocks(redis_url, ttl=0.3, prefix=prefix)
    agent = "agent-00000000-0000-4000-8000-00000000000b"
    direct = redis.Redis.from_url(redis_url)
    try:
        release = await holder.acquire(agent, timeout=1)
        await asyncio.sleep(0.8)  # several TTLs: the keeper extends it
        with pytest.raises(LockTimeout):
            await other.acquire(agent, timeout=0.1)
        await release()
        # A holder that dies without releasing: its key expires after the TTL.
        direct.set(holder.prefix + agent, "dead-process", px=300)
        release = await other.acquire(agent, timeout=2)
        await release()
    finally:
        direct.close()
        drop_keys(redis_url, prefix)
        await holder.close()
        await other.close()


def test_server_with_redis_serialises_turns(make_server, redis_url: str) -> None:
    prefix = "memproxy-test-server:"
    try:
        srv = make_server(redis_url=redis_url, redis_prefix=prefix)
        agent = create_agent(srv.base_url)
        client = sdk(srv.base_url)
        out = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "hi"}],
                                             extra_headers=sim_headers(reply="hello from redis-locked turn"))
        assert out.choices[0].message.content == "hello from redis-locked turn"
        direct = redis.Redis.from_url(redis_url)
        assert direct.get(prefix + "turn:" + agent) is None  # released after the turn
        assert direct.exists(prefix + "ver:" + agent)  # the prefix given is the one used
        direct.close()
    finally:
        drop_keys(redis_url, prefix)


async def test_local_locks_keep_no_entry_for_agents_not_in_a_turn() -> None:
    locks = LocalAgentLocks()
    agents = [f"agent-00000000-0000-4000-8000-{i:012d}" for i in range(50)]
    for agent in agents:
        release = await locks.acquire(agent, timeout=1)
        await release()
    assert len(locks) == 0  # one lock per agent ever seen would grow with every new agent

    holder = await locks.acquire(agents[0], timeout=1)
    waiter = asyncio.create_task(locks.acquire(agents[0], timeout=5))
    await asyncio.sleep(0.05)
    with pytest.raises(LockTimeout):
        await locks.acquire(agents[0], timeout=0.05)  # a waiter that gives up leaves the others in place
    assert len(locks) == 1
    await holder()
    release_waiter = await asyncio.wait_for(waiter, 5)  # still FIFO: the queued waiter gets it
    assert len(locks) == 1
    await release_waiter()
    assert len(locks) == 0

    holder = await locks.acquire(agents[1], timeout=1)
    behind = asyncio.create_task(locks.acquire(agents[1], timeout=5))
    await asyncio.sleep(0.05)
    behind.cancel()  # a client that hangs up while waiting
    await asyncio.gather(behind, return_exceptions=True)
    await holder()
    assert len(locks) == 0


async def test_a_lease_reads_the_tools_version_a_tools_write_bumped(redis_url: str) -> None:
    prefix = "memproxy-test-toolsver:"
    a, b = RedisAgentLocks(redis_url, prefix=prefix), RedisAgentLocks(redis_url, prefix=prefix)
    agent = "agent-00000000-0000-4000-8000-00000000000c"
    try:
        heard: list[dict[str, int] | None] = []
        b.on_drop(heard.append)
        await asyncio.sleep(0.2)  # subscribed
        assert await b.tools_version() == 0
        [(_, old, new)] = await a.changed(["@tools"])  # what proxy/tool_sync.py does after a tool write
        assert old == 0 and new > 0 and await b.tools_version() == new
        lease = await b.lease(agent, timeout=1)
        assert lease.tools_version == new  # read in the lock's own round trip: no extra one per turn
        await lease.release(bump=False)
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.02)
        assert heard == [{"@tools": new}]
    finally:
        drop_keys(redis_url, prefix)
        await a.close()
        await b.close()


async def test_an_agents_version_read_before_a_load_is_the_one_its_next_lease_reads(redis_url: str) -> None:
    prefix = "memproxy-test-agentver:"
    a, b = RedisAgentLocks(redis_url, prefix=prefix), RedisAgentLocks(redis_url, prefix=prefix)
    down = RedisAgentLocks("redis://127.0.0.1:1/0", prefix=prefix)  # nothing listens there
    agent = "agent-00000000-0000-4000-8000-00000000000d"
    try:
        assert await b.version(agent) == 0  # never bumped: what a lease reads too
        lease = await a.lease(agent, timeout=1)
        assert lease.version == 0
        await lease.release(bump=True)  # a turn's write, announced
        seen = await b.version(agent)
        assert seen is not None and seen > 0
        lease = await b.lease(agent, timeout=1)
        assert lease.version == seen  # nothing written since the read: a copy loaded after it is current
        await lease.release(bump=False)
        assert await down.version(agent) is None  # unknown: the copy is checked at its lease instead
    finally:
        drop_keys(redis_url, prefix)
        await a.close()
        await b.close()
        await down.close()


async def test_a_load_whose_version_is_known_does_not_ask_redis_for_it(redis_url: str, tmp_path: Any) -> None:
    """Reloaded under a lease, a copy takes the lease's version; dropped by an announcement, the announced one."""
    prefix = "memproxy-test-knownver:"
    store = DuckDBStore(str(tmp_path / "memproxy.duckdb"))
    await store.open()
    here, elsewhere = RedisAgentLocks(redis_url, prefix=prefix), RedisAgentLocks(redis_url, prefix=prefix)
    memory = AgentMemory(store)
    memory.coherence = here
    try:
        live = await memory.create_agent(Agent(id=new_id("agent"), name="a"), [])
        other = await elsewhere.lease(live.id, timeout=1)
        await other.release(bump=True)  # another process's turn
        lease = await here.lease(live.id, timeout=1)
        reads, loads, refreshes = memory.version_reads, memory.loads, memory.refreshes
        fresh = await current(memory, live, lease)
        assert fresh is not None and fresh is not live and fresh.version == lease.version
        assert (memory.loads - loads, memory.refreshes - refreshes, memory.version_reads - reads) == (1, 1, 0)
        await lease.release(bump=False)

        memory.dropped({live.id: lease.version + 7})  # as the change channel announces another process's write
        memory.dropped({live.id: lease.version + 5})  # a late announcement of an older one changes nothing
        again = await memory.get(live.id)
        assert again is not None and again is not fresh and again.version == lease.version + 7
        assert (memory.loads - loads, memory.refreshes - refreshes, memory.version_reads - reads) == (2, 2, 0)
        memory.forget(live.id)
        first = await memory.get(live.id)  # nothing known of it: its version is read before the store
        assert first is not None and first.version == lease.version and memory.version_reads - reads == 1
    finally:
        drop_keys(redis_url, prefix)
        await here.close()
        await elsewhere.close()
        await store.close()
