"""When a search table gets its maintenance pass, and what a pass leaves: few index deltas, few fragments, nothing unindexed."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from memory.longterm import LanceLongTermMemory, RecallRecord, maintenance
from memory.longterm.schema import RECALL_SCHEMA
from memory.longterm.tables import MemoryTable
from memory.models import new_id

INTERVAL = 10.0


def records(agent_id: str, count: int = 20) -> list[RecallRecord]:
    now = datetime.now(timezone.utc)
    return [RecallRecord(new_id("message"), agent_id, "user", f"note {i} about kites", now) for i in range(count)]


def _table(written: int, writes: int, *, since_pass: float, since_write: float) -> MemoryTable:
    table = MemoryTable(None, "recall", RECALL_SCHEMA)
    table.rows_since_optimize, table.writes_since_optimize = written, writes
    table.last_optimize, table.last_write = 1000.0 - since_pass, 1000.0 - since_write
    return table


def test_a_pass_waits_for_its_rows_whatever_the_table_holds() -> None:
    busy = {"since_pass": 60.0, "since_write": 0.5}
    assert not maintenance.pass_due(_table(maintenance.PASS_ROWS - 1, 10, **busy), 1000.0, INTERVAL)
    assert maintenance.pass_due(_table(maintenance.PASS_ROWS, 10, **busy), 1000.0, INTERVAL)


def test_never_sooner_than_the_interval_and_never_without_writes() -> None:
    assert not maintenance.pass_due(_table(50_000, 900, since_pass=5.0, since_write=0.1), 1000.0, INTERVAL)
    assert not maintenance.pass_due(_table(0, 0, since_pass=600.0, since_write=600.0), 1000.0, INTERVAL)


def test_many_small_writes_or_a_quiet_table_get_their_pass() -> None:
    busy = {"since_pass": 60.0, "since_write": 0.5}
    assert maintenance.pass_due(_table(600, maintenance.MAX_WRITES, **busy), 1000.0, INTERVAL)
    assert not maintenance.pass_due(_table(600, maintenance.MAX_WRITES - 1, **busy), 1000.0, INTERVAL)
    quiet = maintenance.QUIET_INTERVALS * INTERVAL
    assert maintenance.pass_due(_table(2, 1, since_pass=quiet, since_write=quiet), 1000.0, INTERVAL)
    assert not maintenance.pass_due(_table(2, 1, since_pass=quiet, since_write=quiet - 1), 1000.0, INTERVAL)


async def test_row_counts_follow_writes_and_passes(tmp_path: Any) -> None:
    lt = LanceLongTermMemory(str(tmp_path / "lance"), None)
    agent_id = new_id("agent")
    await lt.open()
    try:
        batch = records(agent_id)
        lt.enqueue_messages(batch, new=True)
        await lt.flush()
        table = lt.tables[1]
        written = len(batch)
        assert (table.rows_since_optimize, table.writes_since_optimize) == (written, 1)
        await lt.delete_recall([r.id for r in batch[:3]])
        await lt.optimize()
        assert (table.rows_since_optimize, table.writes_since_optimize) == (0, 0)
    finally:
        await lt.close()
