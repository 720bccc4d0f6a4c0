"""Checks of the settings that bound memory, run before start-up so a bad value is one plain sentence.

Without them a typo surfaces late and obscurely: DuckDB's parser error when the store opens, an agent
cache of -5 that drops every agent as soon as it is loaded, a NaN interval that spins a loop.
"""

from __future__ import annotations

import math
import re
from typing import Any

# DuckDB's memory_limit syntax, the plain part of it: a number and a unit (B, KB, MB, GB, TB, or KiB..TiB),
# or a share of the machine's memory such as 50%.
_SHARE = re.compile(r"^\s*\d+(\.\d+)?\s*%\s*$")
_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
MIN_DUCKDB_BYTES = 16 * 10**6  # a floor far under any useful pool: a smaller value is a typo (16KB for 16MB)


def size_bytes(text: str) -> int | None:
    """Bytes in a DuckDB size such as `256MB` or `1.5GiB`; None if it is not one."""
    match = _SIZE.match(text)
    if match is None:
        return None
    number = float(re.sub(r"[a-zA-Z\s]", "", text))
    return int(number * _UNITS[match.group(2).lower()])


def memory_setting_errors(settings: Any) -> list[str]:
    """One sentence per memory setting that is out of range (empty when all are usable)."""
    errors: list[str] = []
    limit = settings.duckdb_memory_limit
    if limit:
        size = size_bytes(str(limit))
        if size is None and _SHARE.match(str(limit)):
            pass  # a share of RAM: DuckDB resolves it
        elif size is None:
            errors.append(f"MEMPROXY_DUCKDB_MEMORY_LIMIT must be a size such as 256MB, 2GB or 25%, not {limit!r}")
        elif size < MIN_DUCKDB_BYTES:
            errors.append(f"MEMPROXY_DUCKDB_MEMORY_LIMIT must be at least 16MB, not {limit!r}")
    if settings.agent_cache_size < 1:
        errors.append(f"MEMPROXY_AGENT_CACHE_SIZE must be at least 1, not {settings.agent_cache_size}")
    if settings.search_cache_mb < 1:
        errors.append(f"MEMPROXY_SEARCH_CACHE_MB must be at least 1, not {settings.search_cache_mb}")
    for env, value, zero_ok in (
        ("MEMPROXY_SEARCH_OPTIMIZE_INTERVAL", settings.search_optimize_interval, False),
        ("MEMPROXY_SEARCH_REOPEN_INTERVAL", settings.search_reopen_interval, True),
        ("MEMPROXY_MALLOC_TRIM_INTERVAL", settings.malloc_trim_interval, True),
        ("MEMPROXY_MEMORY_REPORT_INTERVAL", settings.memory_report_interval, True),
    ):
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            bound = "0 (never) or more" if zero_ok else "more than 0"
            errors.append(f"{env} must be a number of seconds, {bound}, not {value}")
    return errors
