"""Give freed native memory back to the OS.

DuckDB, LanceDB (its Rust threads) and Arrow allocate through glibc's malloc, which keeps freed
chunks in per-thread arenas for reuse; with many threads freeing each other's memory the arenas
fragment and RSS only ratchets up. `malloc_trim(0)` releases every free page of every arena.
Elsewhere than glibc (musl, macOS) there is nothing to call and this is a no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

log = logging.getLogger("memproxy")


def _load_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_trim()


def available() -> bool:
    return _MALLOC_TRIM is not None


def trim() -> bool:
    """Release free heap pages to the OS; True if any were released."""
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
