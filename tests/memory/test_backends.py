"""memory.backends: the configuration picks the backend, and nothing above memory/ names one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from memory.backends import BackendConfig, select_backend
from memory.longterm.api import LongTermMemory
from memory.models import Agent, new_id
from memory.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
# Modules that are one backend's implementation; only memory/backends.py may import them.
BACKEND_MODULES = ("duckdb", "lancedb", "memory.duckdb_store", "memory.duckdb_commit", "memory.duckdb_rows",
                   "memory.migrations", "memory.longterm.index", "memory.longterm.tables", "asyncpg",
                   "memory.postgres_store", "memory.postgres_commit", "memory.postgres_sql",
                   "memory.postgres_migrations")


async def test_the_default_is_the_embedded_backend_in_the_data_dir(tmp_path: Path) -> None:
    backend = select_backend(BackendConfig(data_dir=str(tmp_path / "data")))
    assert backend.name == "embedded"
    store, longterm = backend.store(), backend.longterm(None)
    assert isinstance(store, Store) and isinstance(longterm, LongTermMemory)
    await store.open()
    await longterm.open()
    try:
        agent = Agent(id=new_id("agent"), name="a")
        await store.create_agent(agent, [])
        await longterm.add_passages(agent.id, [("kept in the data dir", [])])
    finally:
        await longterm.close()
        await store.close()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["lance", "memproxy.duckdb"]


def test_proxy_and_tools_import_no_backend_module() -> None:
    offenders = []
    for folder in ("proxy", "tools"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.relative_to(REPO_ROOT)}: {name}" for name in names
                              if any(name == m or name.startswith(m + ".") for m in BACKEND_MODULES)]
    assert offenders == []


def test_loading_the_app_loads_no_backend_until_one_is_opened() -> None:
    code = "import sys, proxy.app; print(sorted(m for m in sys.modules if m in %r))" % (BACKEND_MODULES,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == "[]"
