"""The recall write-behind queue writes what was queued before a drain, in batches, and nothing that came later."""

from __future__ import annotations

from datetime import datetime, timezone

from memory.longterm.recall_queue import RecallQueue
from memory.longterm.records import RecallRecord


def _record(i: int) -> RecallRecord:
    return RecallRecord(f"message-{i}", "agent-a", "user", f"text {i}", datetime.now(timezone.utc))


async def test_messages_queued_during_a_drain_wait_for_the_next_one() -> None:
    written: list[list[str]] = []
    queue: RecallQueue

    async def write(batch: list[RecallRecord]) -> None:
        written.append([r.id for r in batch])
        queue.put([_record(100 + len(written))])  # a turn ends while the batch is being written

    queue = RecallQueue(write, max_batch=2)
    queue.put([_record(i) for i in range(5)])
    await queue.drain()
    assert written == [["message-0", "message-1"], ["message-2", "message-3"], ["message-4"]]
    assert len(queue) == 3  # the three that arrived meanwhile, for the next drain
    await queue.drain()
    assert written[3:] == [["message-101", "message-102"], ["message-103"]]
    assert len(queue) == 2


async def test_a_failed_write_keeps_its_batch_queued_first() -> None:
    calls = 0

    async def write(batch: list[RecallRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk full")

    queue = RecallQueue(write, max_batch=10)
    queue.put([_record(i) for i in range(3)])
    try:
        await queue.drain()
    except RuntimeError:
        pass
    else:
        raise AssertionError("drain should raise")
    assert [r.id for r in queue._pending] == ["message-0", "message-1", "message-2"]
    await queue.drain()
    assert len(queue) == 0
