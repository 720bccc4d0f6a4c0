"""A memory setting out of range stops `memproxy serve` with one plain sentence, before anything is created."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from memory.bounds import memory_setting_errors, size_bytes
from proxy.config import Settings

MEMPROXY = [sys.executable, "-m", "proxy"]


def test_defaults_and_shares_of_ram_are_valid() -> None:
    assert memory_setting_errors(Settings()) == []
    assert memory_setting_errors(Settings.load({"duckdb_memory_limit": "25%"}, environ={})) == []


@pytest.mark.parametrize("text, expected", [("256MB", 256 * 10**6), ("1.5GiB", int(1.5 * 2**30)),
                                            (" 64 mib ", 64 * 2**20), ("2gb", 2 * 10**9),
                                            ("256", None), ("MB", None), ("-1GB", None), ("1e3MB", None)])
def test_duckdb_sizes_in_the_plain_syntax(text: str, expected: int | None) -> None:
    assert size_bytes(text) == expected  # exponents are refused, though DuckDB would take them


@pytest.mark.parametrize("overrides, names", [
    ({"duckdb_memory_limit": "banana"}, ["MEMPROXY_DUCKDB_MEMORY_LIMIT"]),
    ({"duckdb_memory_limit": "16KB"}, ["MEMPROXY_DUCKDB_MEMORY_LIMIT"]),
    ({"agent_cache_size": 0}, ["MEMPROXY_AGENT_CACHE_SIZE"]),
    ({"search_cache_mb": -1}, ["MEMPROXY_SEARCH_CACHE_MB"]),
    ({"search_optimize_interval": 0.0}, ["MEMPROXY_SEARCH_OPTIMIZE_INTERVAL"]),
    ({"search_reopen_interval": -1.0, "malloc_trim_interval": float("nan")},
     ["MEMPROXY_SEARCH_REOPEN_INTERVAL", "MEMPROXY_MALLOC_TRIM_INTERVAL"]),
    ({"memory_report_interval": float("inf")}, ["MEMPROXY_MEMORY_REPORT_INTERVAL"]),
])
def test_each_bad_value_is_named(overrides: dict, names: list[str]) -> None:
    errors = memory_setting_errors(Settings.load(overrides, environ={}))
    assert [error.split()[0] for error in errors] == names


def test_zero_disables_the_optional_loops() -> None:
    settings = Settings.load({"search_reopen_interval": 0.0, "malloc_trim_interval": 0.0,
                              "memory_report_interval": 0.0}, environ={})
    assert memory_setting_errors(settings) == []


@pytest.mark.parametrize("env", [{"MEMPROXY_AGENT_CACHE_SIZE": "abc"}, {"MEMPROXY_AGENT_CACHE_SIZE": "-5"},
                                 {"MEMPROXY_DUCKDB_MEMORY_LIMIT": "lots"}, {"MEMPROXY_SEARCH_REOPEN_INTERVAL": "soon"}])
def test_serve_refuses_a_bad_value_before_creating_anything(tmp_path, env: dict[str, str]) -> None:
    data = tmp_path / "data"
    out = subprocess.run([*MEMPROXY, "serve", "--port", "0", "--data-dir", str(data)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, **env})
    name = next(iter(env))
    assert out.returncode == 2
    assert out.stderr.startswith(f"memproxy: {name} must be") and "Traceback" not in out.stderr
    assert not data.exists()  # refused before the data dir (or anything in it) was made
