"""memory.backends: the configuration picks the backend, and nothing above memory/ names one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from memory.backends import BackendConfig, describe_backend, redact_url, select_backend
from memory.longterm.api import LongTermMemory
from memory.models import Agent, new_id
from memory.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
# Modules that are one backend's implementation; only memory/backends.py may import them.
BACKEND_MODULES = ("duckdb", "lancedb", "memory.duckdb_store", "memory.duckdb_connection", "memory.duckdb_catalog",
                   "memory.duckdb_commit", "memory.duckdb_rows", "memory.migrations", "memory.longterm.index", "memory.longterm.tables", "asyncpg",
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
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["lance", "memproxy.duckdb", "memproxy.duckdb.journal"]


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


def test_a_database_url_selects_postgres_and_the_password_stays_out_of_its_description() -> None:
    url = "postgresql://memproxy:s3cret-pw@db.internal:5432/prod"
    backend = select_backend(BackendConfig(data_dir="unused", database_url=url))
    assert backend.name == "postgresql"
    assert isinstance(backend.store(), Store) and isinstance(backend.longterm(None), LongTermMemory)
    for text in (describe_backend(BackendConfig("unused", url)), repr(backend), redact_url(url)):
        assert "s3cret" not in text and "memproxy:***@db.internal:5432/prod" in text
    assert redact_url("postgresql://db/x") == "postgresql://db/x"
    assert select_backend(BackendConfig(data_dir="d", database_url=None)).name == "embedded"
    with pytest.raises(ValueError) as wrong:
        select_backend(BackendConfig(data_dir="d", database_url="mysql://root:s3cret-pw@h/x"))
    assert "s3cret" not in str(wrong.value)


async def test_the_postgres_backend_keeps_everything_in_the_database(postgres_schema_url: str, tmp_path: Path) -> None:
    backend = select_backend(BackendConfig(data_dir=str(tmp_path / "data"), database_url=postgres_schema_url))
    store, longterm = backend.store(), backend.longterm(None)
    await store.open()
    await longterm.open()
    try:
        agent = Agent(id=new_id("agent"), name="a")
        await store.create_agent(agent, [])
        await longterm.add_passages(agent.id, [("kept in the database", [])])
        assert [h.record.text for h in await longterm.search_passages(agent.id, "database")] == ["kept in the database"]
        assert not longterm.vector_search  # no embedder
    finally:
        await longterm.close()
        await store.close()
    assert not (tmp_path / "data").exists()  # nothing written beside the database
