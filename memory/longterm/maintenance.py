"""Upkeep of the search tables: when a table gets a maintenance pass, the loop that runs passes, and reopening.

A pass (`compaction.py`) compacts the fragments written since the last one, brings the FTS and agent_id
indexes up to date and deletes versions older than a minute. Its cost follows the rows written since
the last pass, not the table, so passes are scheduled by those rows: one comes once `PASS_ROWS` rows
are written, or after `MAX_WRITES` writes (each write leaves a small unindexed fragment, which full-text
search scans, ~0.07 ms each), or when a table has had no write for `QUIET_INTERVALS` optimize intervals
(a minute by default), and never sooner than the interval after the last. New rows are searchable from
their write on, indexed or not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from memory import native_heap
from memory.longterm.lancedb_loader import lancedb
from memory.longterm.tables import MemoryTable

if TYPE_CHECKING:
    from memory.longterm.index import LanceLongTermMemory

log = logging.getLogger("memproxy.longterm")

PASS_ROWS = 10_000  # rows written since the last pass that make one due
MAX_WRITES = 64  # writes (so unindexed fragments) since the last pass that make one due anyway
QUIET_INTERVALS = 6  # a table with no write for this many optimize intervals gets its pending pass


def pass_due(table: MemoryTable, now: float, interval: float) -> bool:
    """Whether `table` should get a maintenance pass now; never sooner than `interval` after the last."""
    if not table.writes_since_optimize or now - table.last_optimize < interval:
        return False
    return (table.rows_since_optimize >= PASS_ROWS or table.writes_since_optimize >= MAX_WRITES
            or now - table.last_write >= QUIET_INTERVALS * interval)


def new_session(total_bytes: int | None) -> lancedb.Session:
    # LanceDB caches index pages and file metadata per table version, and every write and compaction makes
    # a version, so entries of dead versions pile up to the cap: 6 GiB + 1 GiB unless we give a smaller one.
    index_bytes = None if total_bytes is None else total_bytes * 3 // 4
    metadata_bytes = None if total_bytes is None else total_bytes - total_bytes * 3 // 4
    return lancedb.Session(index_cache_size_bytes=index_bytes, metadata_cache_size_bytes=metadata_bytes)


async def optimize_now(tables: list[MemoryTable]) -> None:
    """A pass on every table, now (retried: a concurrent delete can pre-empt a compaction)."""
    for table in tables:
        for _ in range(5):
            if await table.optimize():
                break


async def maintain(lt: LanceLongTermMemory) -> None:
    """The background loop: passes when due, then reopen (at most every reopen_interval), trim, re-embed."""
    last_reembed = time.monotonic()
    while True:
        # On whole seconds, when the HTTP server's clock ticks too (proxy.quiet_server): an idle process then
        # wakes once a second, not twice; each wake-up costs a virtual machine's CPU tens of microseconds or more.
        period = min(1.0, lt.optimize_interval)
        await asyncio.sleep(period - time.time() % period)
        now = time.monotonic()
        optimized = False
        for table in lt.tables:
            if pass_due(table, now, lt.optimize_interval):
                try:
                    optimized = await table.optimize() or optimized
                except Exception:
                    log.exception("optimizing %s failed", table.name)
        if optimized and lt.reopen_interval > 0 and now - lt.last_reopen >= lt.reopen_interval:
            try:
                await lt.reopen()
            except Exception:
                log.exception("reopening the search tables failed")
        if optimized:
            # A compaction's buffers (tens of MB on a big table) are freed by LanceDB's threads into their
            # own malloc arenas, which keep them; hand those pages back at once rather than at the next trim.
            await asyncio.to_thread(native_heap.trim)
        if lt.maybe_unembedded and now - last_reembed >= lt.reembed_interval:
            last_reembed = now
            try:
                await lt.embed_pending()
            except Exception:
                log.exception("re-embedding failed")
