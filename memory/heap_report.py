"""Where the server's memory is: one log line every `MEMPROXY_MEMORY_REPORT_INTERVAL` seconds.

Off by default. It answers "what grows?" on a running server without a debug endpoint: RSS split
into anonymous and file-backed pages (/proc/self/smaps_rollup), glibc's heap (in use, free but kept,
mmapped), DuckDB's buffer pool and WAL, LanceDB's caches and Arrow's pool, Python's allocated blocks,
the live agent cache and the recall queue, threads and open files. Only sizes and counts are logged,
never content. Every figure is read off the event loop except the counters the loop owns.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from memory import native_heap

log = logging.getLogger("memproxy.memory.report")

MB = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    function = native_heap.libc_function("mallinfo2", [])
    if function is None:
        return None
    function.restype = _MallInfo2
    return function  # type: ignore[no-any-return]


_MALLINFO2 = _mallinfo2()


def process_figures() -> dict[str, float]:
    """RSS parts, glibc heap, threads and fds of this process, in MB where a size (Linux; {} elsewhere)."""
    figures: dict[str, float] = {}
    try:
        with open("/proc/self/smaps_rollup") as rollup:
            for line in rollup:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Anonymous", "Pss_File", "Shared_Clean", "Private_Clean"):
                    figures[key.lower()] = int(rest.split()[0]) / 1024
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    figures["threads"] = int(line.split()[1])
        figures["fds"] = len(os.listdir("/proc/self/fd"))
    except OSError:
        pass
    if _MALLINFO2 is not None:
        info = _MALLINFO2()
        figures.update(heap_in_use=info.uordblks / MB, heap_free=info.fordblks / MB, heap_mmap=info.hblkhd / MB,
                       heap_arena=info.arena / MB)
    try:
        import pyarrow

        figures["arrow"] = pyarrow.total_allocated_bytes() / MB
    except ImportError:
        pass
    figures["py_blocks_k"] = sys.getallocatedblocks() / 1000
    if tracemalloc.is_tracing():  # PYTHONTRACEMALLOC=1: what Python objects hold, at a cost per allocation
        figures["py_traced"] = tracemalloc.get_traced_memory()[0] / MB
    return figures


Probe = Callable[[], Awaitable[dict[str, float]]]


async def report_every(interval: float, probes: list[Probe]) -> None:
    """Background loop: log the figures of this process and of each probe every `interval` seconds."""
    if interval <= 0:
        return
    log.setLevel(logging.INFO)  # asking for the report is asking to see it, whatever MEMPROXY_LOG_LEVEL says
    while True:
        await asyncio.sleep(interval)
        try:
            figures: dict[str, Any] = await asyncio.to_thread(process_figures)
            for probe in probes:
                figures.update(await probe())
            log.info("memory: %s", " ".join(f"{k}={_fmt(v)}" for k, v in figures.items()))
        except Exception:  # noqa: BLE001 - a failed report costs a log line, never a request
            log.exception("memory report failed")


def _fmt(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)
