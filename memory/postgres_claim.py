"""One claim per memproxy process on a PostgreSQL schema: shared among processes that coordinate through Redis."""

from __future__ import annotations

import asyncpg

from memory.store import StoreError

# The second key of the claim's advisory lock (the first is the schema's hash): any constant, the same everywhere.
_CLAIM_KEY = 0x6D70


async def claim_database(database_url: str, *, shared: bool) -> asyncpg.Connection:
    """Refuse a second process on one database unless every process coordinates through Redis.

    Processes with MEMPROXY_REDIS_URL share an advisory lock on the schema; one without it takes the lock
    alone. So a replica started without Redis beside others (or others beside it) stops at start-up
    with one sentence, instead of running turns that no lock serializes. The session lives as long
    as the process (a killed process's claim ends with its connection).
    """
    con = await asyncpg.connect(database_url)
    try:
        take = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        if await con.fetchval(f"SELECT {take}(hashtext(current_schema()), $1)", _CLAIM_KEY):
            return con
    except BaseException:
        await con.close()
        raise
    await con.close()
    if shared:
        raise StoreError("a memproxy process without MEMPROXY_REDIS_URL already serves this database; "
                         "several processes need MEMPROXY_REDIS_URL set on every one of them")
    raise StoreError("another memproxy process already serves this database; several processes "
                     "(--workers or replicas) need MEMPROXY_REDIS_URL set on every one of them")
