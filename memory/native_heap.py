"""Give freed native memory back to the OS.

DuckDB, LanceDB (its Rust threads) and Arrow allocate through glibc's malloc, which keeps freed
chunks in per-thread arenas for reuse; with many threads freeing each other's memory the arenas
fragment and RSS only ratchets up. `malloc_trim(0)` releases every free page of every arena.
`limit_arenas` caps how many arenas there are (glibc's default is 8 per core): at one, the memory a
compaction thread frees is what the next request's allocation finds, instead of sitting in an arena
only background threads use (a 20,000-turn soak peaked ~10 MB lower with one arena than with two).
Elsewhere than glibc (musl, macOS) there is nothing to call and both are no-ops. `trim` also gives
back what Arrow's own allocator (mimalloc) keeps cached.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger("memproxy")


M_ARENA_MAX = -8  # mallopt parameter numbers, from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
ARENAS = 1
# Blocks up to this size come from the heap, not from their own mmap; see `keep_large_blocks`.
MMAP_THRESHOLD = 32 * 2**20
# Free memory at the top of the heap is handed back past this; `trim` (every few seconds) hands back the rest.
TRIM_THRESHOLD = 64 * 2**20


def libc_function(name: str, argtypes: list[type]) -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """A function of the C library returning int, or None where there is no such function (not glibc)."""
    library = ctypes.util.find_library("c")
    if not library:
        return None
    try:
        function = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


_MALLOC_TRIM = libc_function("malloc_trim", [ctypes.c_size_t])
_MALLOPT = libc_function("mallopt", [ctypes.c_int, ctypes.c_int])


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas, unless MALLOC_ARENA_MAX says otherwise; call before threads start."""
    if _MALLOPT is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    return bool(_MALLOPT(M_ARENA_MAX, arenas))


def keep_large_blocks() -> bool:
    """Serve large blocks from the heap and keep freed ones (unless MALLOC_MMAP_THRESHOLD_ or _TRIM_ is set).

    An upstream request body of a long history is one block of hundreds of KB, a little larger every turn,
    and a few are in flight at once. glibc's own trim threshold follows its mmap threshold (twice the
    largest block freed), so once those bodies are freed the top of the heap is past it: handed back,
    then faulted in and zeroed again by the next turns (a probe with four 600 KB bodies a round: 212,604
    page faults against 1,017 with fixed thresholds). Fixed thresholds keep such blocks in the heap; the
    periodic `trim` still returns what is free.
    """
    if _MALLOPT is None or os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    return bool(_MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(_MALLOPT(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def available() -> bool:
    return _MALLOC_TRIM is not None


def trim() -> bool:
    """Release free heap pages to the OS; True if any were released."""
    arrow = sys.modules.get("pyarrow")  # loaded with LanceDB; never imported here just to trim it
    if arrow is not None:
        arrow.default_memory_pool().release_unused()
    return bool(_MALLOC_TRIM(0)) if _MALLOC_TRIM is not None else False


async def trim_every(interval: float) -> None:
    """Background loop: trim on a worker thread (it holds arena locks for a few ms, never on the event loop)."""
    if _MALLOC_TRIM is None or interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(trim)
        except Exception:  # noqa: BLE001 - a failed trim costs memory, never a request
            log.exception("malloc_trim failed")


PR_SET_NAME = 15  # prctl option, from linux/prctl.h
_PRCTL = libc_function("prctl", [ctypes.c_int, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong])


def thread_namer(name: str) -> Callable[[], None]:
    """A thread pool `initializer` giving its thread `name` for the OS too (top -H, /proc/<pid>/task/*/comm):
    Python's thread names stay inside the interpreter. The kernel keeps 15 bytes."""

    def name_thread() -> None:
        if _PRCTL is not None:
            _PRCTL(PR_SET_NAME, name.encode()[:15], 0, 0, 0)

    return name_thread
