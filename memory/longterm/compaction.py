"""One maintenance pass over a search table, costing what changed since the last pass, not the table.

LanceDB's own `optimize` cannot be told what to leave alone: it rewrites every fragment under ~1M rows
and merges the new rows into each index whole, so a pass on a 1M-row table costs seconds of CPU however
few rows are new (measured: 1.7-4.6 s for 19k new rows). This pass uses Lance itself (`pylance`), which
exposes the two knobs that make it incremental:

- Compaction targets `FRAGMENT_ROWS`-row fragments, so a fragment that full is never rewritten again:
  what a pass compacts is the new small fragments (and the small ones an index merge just joined).
- Each index is updated with `num_indices_to_merge` from `indices_to_merge`: the new rows get a delta
  index of their own, or are merged with the latest deltas no bigger than what is being merged (size
  tiers). A row is rewritten once per doubling of the rows indexed after it, so about
  log2(table / rows per pass) times over its life, and the oldest, biggest delta only once the newer ones
  add up to its size. Searches read every delta; the tiers keep them to about that logarithm.

Measured with 20,000 new rows a pass, 12 passes: 21, 23 and 19 CPU-us per row at 1k, 100k and 1M rows.

Lance's calls block, so they run on one thread of their own (one pass at a time), named `lance-maintenance`
for the OS too, so per-thread CPU figures (`/proc/<pid>/task/*/comm`, `python -m bench indexcost`) count it with
Lance's own threads.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

from memory import native_heap

if TYPE_CHECKING:
    import lance

FRAGMENT_ROWS = 131_072  # compaction leaves fragments this full alone
# Old versions are kept this long after a pass so in-flight reads of them still succeed.
CLEANUP_AFTER = timedelta(seconds=60)
PASS_CACHE_BYTES = 64 * 2**20  # index and metadata cache of the dataset a pass opens (dropped with it)

THREAD_NAME = "lance-maintenance"
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME,
                               initializer=native_heap.thread_namer(THREAD_NAME))


def indices_to_merge(deltas: list[int], new_rows: int) -> int:
    """How many of an index's latest deltas (rows each, oldest first) to merge with `new_rows` (0: a new delta)."""
    merged = new_rows
    count = 0
    for rows in reversed(deltas):
        if rows > merged:
            break
        merged += rows
        count += 1
    return count


def _open(uri: str) -> lance.LanceDataset:
    import lance  # here, not at the top: it adds 0.1-0.3 s to the server's start, and only a pass needs it

    return lance.dataset(uri, index_cache_size_bytes=PASS_CACHE_BYTES, metadata_cache_size_bytes=PASS_CACHE_BYTES)


def incremental_pass(uri: str) -> None:
    """Compact the small fragments, bring every index up to date, drop versions older than `CLEANUP_AFTER`."""
    _open(uri).optimize.compact_files(target_rows_per_fragment=FRAGMENT_ROWS)
    dataset = _open(uri)
    for name in [index.name for index in dataset.describe_indices()]:
        stats = dataset.stats.index_stats(name)
        if stats["num_unindexed_rows"]:
            merge = indices_to_merge(stats["num_indexed_rows_per_delta"], stats["num_unindexed_rows"])
            dataset.optimize.optimize_indices(num_indices_to_merge=merge, index_names=[name])
            dataset = _open(uri)
    dataset.cleanup_old_versions(older_than=CLEANUP_AFTER)


async def run_pass(uri: str) -> None:
    """`incremental_pass` on the maintenance thread."""
    await asyncio.get_running_loop().run_in_executor(_executor, incremental_pass, uri)
