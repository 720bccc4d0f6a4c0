"""Native heap hygiene: malloc_trim and the arena cap are reachable on glibc and harmless elsewhere."""

from __future__ import annotations

import asyncio
import ctypes
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from memory import native_heap

GLIBC = platform.libc_ver()[0] == "glibc"


# Run in a fresh interpreter: the test process's own heap (its free chunks, its raised mmap threshold)
# would decide where the blocks land.
TRIM_PROBE = """
import ctypes
from memory import native_heap

def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(64 * 1024) for _ in range(960)]  # 60 MB of heap chunks, below the mmap threshold
for block in blocks:
    ctypes.memset(block, 1, 64 * 1024)
# Free every other block and keep the rest: a freed chunk then never borders another free chunk or the
# top of the heap, so free() itself cannot give it back (it would if the block ended the heap), and only
# malloc_trim can release its pages.
for block in blocks[0::2]:
    libc.free(block)
freed = rss()
print(native_heap.trim(), freed - rss())
"""


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_trim_gives_freed_memory_back() -> None:
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    released, released_kb = out.stdout.split()
    assert released == "True" and int(released_kb) > 16 * 1024  # freed but resident pages left the process


def test_arena_cap_defers_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert native_heap.limit_arenas() is False  # the operator's own setting wins


async def test_trim_loop_stops_when_cancelled_and_does_nothing_when_disabled() -> None:
    await asyncio.wait_for(native_heap.trim_every(0), 1)  # 0 = never: returns at once
    loop = asyncio.create_task(native_heap.trim_every(0.01))
    await asyncio.sleep(0.05)
    assert not loop.done()
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    assert loop.cancelled()


def test_trim_with_arrow_loaded_also_asks_its_pool_to_give_back() -> None:
    # Run fresh: whether pyarrow is loaded decides what trim touches, and trim must never be what loads it.
    code = ("import sys; from memory import native_heap; native_heap.trim(); print('pyarrow' in sys.modules); "
            "import pyarrow as pa; b = pa.allocate_buffer(8 << 20); del b; native_heap.trim(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "ok"]


# Upstream request bodies of long histories, a few in flight at once and a little larger every turn.
GROWING_BLOCKS = """
import resource, sys
from memory import native_heap
if sys.argv[1] == "keep":
    assert native_heap.keep_large_blocks()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(300):
    bodies = [b"\\x01" * (600_000 + 1_000 * i + k) for k in range(4)]
    del bodies
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_kept_large_blocks_stop_a_growing_body_from_faulting_in_fresh_pages_every_time() -> None:
    faults = {}
    for mode in ("default", "keep"):
        out = subprocess.run([sys.executable, "-c", GROWING_BLOCKS, mode], capture_output=True, text=True,
                             timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert out.returncode == 0, out.stderr
        faults[mode] = int(out.stdout)
    # By default the freed top of the heap (2.4 MB) is past the trim threshold glibc derives (twice the
    # largest block), so it is handed back and faulted in again the next time; kept, the pages are reused.
    assert faults["default"] > 300 * 100
    assert faults["keep"] < faults["default"] / 10


def test_large_block_thresholds_defer_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert native_heap.keep_large_blocks() is False
