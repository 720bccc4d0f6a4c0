"""The write-behind queue that moves conversation messages into the recall table in batches.

`put` never blocks, so the turn loop can hand messages over for free. The background `run` loop
writes whatever is queued shortly after it arrives (a short coalescing pause gathers a turn's
messages into one write) and then rests, so the table sees at most one write per `interval`.
`drain` holds the same lock as the loop's writes: after it returns, everything queued before the
call is on disk, including a batch the loop was writing at that moment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from memory.longterm.records import RecallRecord

log = logging.getLogger("memproxy.longterm")

# Seconds to wait after the first message so later turns join its batch: each LanceDB write costs
# milliseconds of CPU whatever its size, so fewer, larger writes keep it off the turns' first tokens.
COALESCE = 0.25
RETRY_AFTER = 1.0  # seconds between attempts while writes are failing


class RecallQueue:
    def __init__(
        self,
        write: Callable[[list[RecallRecord]], Awaitable[None]],
        *,
        interval: float = 0.5,
        max_batch: int = 256,
    ) -> None:
        self._write = write
        self._interval = interval
        self._max_batch = max_batch
        self._pending: list[RecallRecord] = []
        self._ready = asyncio.Event()
        self.lock = asyncio.Lock()  # held while a batch is written; hold it to keep writes out

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, records: list[RecallRecord]) -> None:
        if records:
            self._pending.extend(records)
            self._ready.set()

    def pending_ids(self, agent_id: str) -> set[str]:
        return {record.id for record in self._pending if record.agent_id == agent_id}

    def discard(self, keep: Callable[[RecallRecord], bool]) -> None:
        """Drop queued records for which `keep` is false (deletions must not be resurrected)."""
        self._pending = [record for record in self._pending if keep(record)]

    async def drain(self) -> None:
        """Write everything queued before the call; raises if a write fails (the batch stays queued).

        Messages queued while it writes wait for the next call: under load, chasing them wrote a few rows
        every few milliseconds, each write a LanceDB commit and a fragment every search then scans.
        """
        async with self.lock:
            owed = len(self._pending)
            while owed > 0 and self._pending:
                size = min(self._max_batch, owed)
                batch = self._pending[:size]
                del self._pending[:size]
                try:
                    await self._write(batch)
                except BaseException:
                    self._pending[0:0] = batch
                    raise
                owed -= size

    async def run(self) -> None:
        """Background loop: write soon after messages arrive, at most once per `interval`."""
        while True:
            await self._ready.wait()
            await asyncio.sleep(COALESCE)
            self._ready.clear()
            started = time.monotonic()
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("recall index write failed; %d messages stay queued", len(self._pending))
                self._ready.set()
                await asyncio.sleep(RETRY_AFTER)
                continue
            await asyncio.sleep(max(0.0, self._interval - (time.monotonic() - started)))
