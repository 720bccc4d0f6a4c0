"""A maintenance pass costs what changed: full fragments stay as they are, new rows get an index delta of their
own, and deltas merge in size tiers, so a pass on a big table does not rewrite the table."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lance
import pytest

from helpers import os_thread_names
from memory.longterm import LanceLongTermMemory, RecallRecord, compaction
from memory.models import new_id

FULL = 64  # the fragment size the tests' passes aim for (production: 131,072 rows)


def test_deltas_merge_in_size_tiers() -> None:
    assert compaction.indices_to_merge([], 100) == 0
    assert compaction.indices_to_merge([0], 100) == 1  # the index made on the empty table is absorbed
    assert compaction.indices_to_merge([1_000_000], 20_000) == 0
    assert compaction.indices_to_merge([1_000_000, 20_000], 20_000) == 1
    assert compaction.indices_to_merge([1_000_000, 40_000, 20_000], 20_000) == 2
    assert compaction.indices_to_merge([1_000_000, 40_000, 20_000], 10_000) == 0
    # A big oldest delta is merged only once the newer ones add up to its size.
    assert compaction.indices_to_merge([60_000, 20_000, 10_000], 10_000) == 2
    assert compaction.indices_to_merge([30_000, 20_000, 10_000], 10_000) == 3


def test_equal_passes_keep_deltas_logarithmic_and_rewrite_each_row_logarithmically() -> None:
    deltas, rewritten = [1_000_000], 0
    for _ in range(256):
        merge = compaction.indices_to_merge(deltas, 1_000)
        merged = 1_000 + sum(deltas[len(deltas) - merge:])
        deltas = deltas[:len(deltas) - merge] + [merged]
        rewritten += merged
        assert len(deltas) <= 10
    assert deltas[0] == 1_000_000  # 256,000 new rows never reached the million-row delta
    assert rewritten <= 256_000 * 10


def _records(agent_id: str, word: str, count: int) -> list[RecallRecord]:
    now = datetime.now(timezone.utc)
    return [RecallRecord(new_id("message"), agent_id, "user", f"{word} note {i}", now) for i in range(count)]


@pytest.fixture
def small_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compaction, "FRAGMENT_ROWS", FULL)
    monkeypatch.setattr(compaction, "CLEANUP_AFTER", timedelta(0))  # old versions go at once


async def test_passes_leave_full_fragments_alone_and_every_row_findable(tmp_path: Any, small_passes: None) -> None:
    lt = LanceLongTermMemory(str(tmp_path / "lance"), None)
    agent_id = new_id("agent")
    await lt.open()
    try:
        lt.enqueue_messages(_records(agent_id, "basalt", 3 * FULL), new=True)
        await lt.flush()
        await lt.optimize()
        uri = await lt.tables[1].table.uri()
        full = {f.fragment_id for f in lance.dataset(uri).get_fragments() if f.count_rows() >= FULL}
        assert full, "the first pass made no full fragment"
        words = [f"word{r}x" for r in range(8)]
        for word in words:
            for _ in range(2):  # two writes: two small fragments a pass
                lt.enqueue_messages(_records(agent_id, word, 10), new=True)
                await lt.flush()
            await lt.optimize()
            dataset = lance.dataset(uri)
            assert full <= {f.fragment_id for f in dataset.get_fragments()}, "a full fragment was rewritten"
            for name in ("text_idx", "agent_id_idx"):
                stats = dataset.stats.index_stats(name)
                assert stats["num_unindexed_rows"] == 0
                assert len(stats["num_indexed_rows_per_delta"]) <= 4
            # Search goes through the server's own handle, which must have moved past the versions just deleted.
            for earlier in [*words[:words.index(word) + 1], "basalt"]:
                hits = await lt.search_recall(agent_id, earlier, mode="fts", limit=500)
                assert len(hits) == (3 * FULL if earlier == "basalt" else 20), earlier
        assert len(lance.dataset(uri).versions()) <= 3
    finally:
        await lt.close()


@pytest.fixture
def small_disk(tmp_path: Any) -> Iterator[str]:
    """A 16 MB tmpfs: a real disk that can be filled up."""
    path = tmp_path / "disk"
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("needs to mount a tmpfs (root in a container that allows it)")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


async def test_a_pass_on_a_full_disk_fails_loses_no_row_and_the_next_catches_up(small_disk: str,
                                                                                small_passes: None) -> None:
    lt = LanceLongTermMemory(os.path.join(small_disk, "lance"), None)
    agent_id = new_id("agent")
    await lt.open()
    try:
        for _ in range(3):
            lt.enqueue_messages(_records(agent_id, "granite", 30), new=True)
            await lt.flush()
        table = lt.tables[1]
        ballast = os.path.join(small_disk, "ballast")
        with open(ballast, "wb") as f:  # fill the disk
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"x" * 65536)
                    f.flush()
        with pytest.raises(OSError):
            await table.optimize()
        assert table.writes_since_optimize == 3  # still owed its pass
        assert len(await lt.search_recall(agent_id, "granite", mode="fts", limit=200)) == 90
        os.unlink(ballast)
        assert await table.optimize()
        assert table.writes_since_optimize == 0
        dataset = lance.dataset(await table.table.uri())
        assert dataset.stats.index_stats("text_idx")["num_unindexed_rows"] == 0
        assert len(await lt.search_recall(agent_id, "granite", mode="fts", limit=200)) == 90
    finally:
        await lt.close()


async def test_the_pass_runs_on_a_thread_named_for_lance(tmp_path: Any) -> None:
    """Per-thread CPU figures (bench indexcost) count a pass with Lance's threads by the OS thread name."""
    lt = LanceLongTermMemory(str(tmp_path / "lance"), None)
    await lt.open()
    try:
        lt.enqueue_messages(_records(new_id("agent"), "slate", 5), new=True)
        await lt.flush()
        await lt.optimize()
    finally:
        await lt.close()
    names = os_thread_names()
    assert compaction.THREAD_NAME[:15] in names


CHILD = """
import asyncio, sys
from datetime import datetime, timezone
from memory.longterm import LanceLongTermMemory, RecallRecord, compaction
from memory.models import new_id

compaction.FRAGMENT_ROWS = 256

async def main(path, agent_id):
    lt = LanceLongTermMemory(path, None)
    await lt.open()
    written = 0
    while True:
        now = datetime.now(timezone.utc)
        lt.enqueue_messages([RecallRecord(new_id("message"), agent_id, "user", f"quartz note {written + i}", now)
                             for i in range(100)], new=True)
        await lt.flush()
        written += 100
        print("flushed", written, flush=True)
        await lt.optimize()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
async def test_a_kill_during_a_pass_loses_no_written_row(tmp_path: Any, delay: float) -> None:
    path, agent_id = str(tmp_path / "lance"), new_id("agent")
    child = subprocess.Popen([sys.executable, "-c", CHILD, path, agent_id], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert child.stdout is not None
    try:
        flushed = 0
        while flushed < 1000:  # several passes, each merging index deltas and compacting
            line = child.stdout.readline()
            assert line, "the writer died"
            flushed = int(line.split()[1])
        time.sleep(delay)  # into the pass that follows this flush
    finally:
        child.kill()
        child.wait()
    lt = LanceLongTermMemory(path, None)
    await lt.open()
    try:
        assert len(await lt.recall_ids(agent_id)) >= flushed
        lt.enqueue_messages(_records(agent_id, "zircon", 3), new=True)
        await lt.flush()
        assert await lt.tables[1].optimize()
        assert len(await lt.search_recall(agent_id, "quartz", mode="fts", limit=5000)) >= flushed
        assert len(await lt.search_recall(agent_id, "zircon", mode="fts", limit=10)) == 3
    finally:
        await lt.close()
