"""PostgreSQL for tests (importable as `pg`): a throwaway database per session, a fresh schema per test.

The local server (MEMPROXY_TEST_POSTGRES_URL, default 127.0.0.1:5432, trust auth) serves relational
and full-text tests. Each test gets its own schema (cheap: no CREATE DATABASE), named in the URL's
`search_path`, which asyncpg passes to the server as a setting.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"search_path={schema},public") if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


async def admin(url: str, sql: str) -> None:
    con = await asyncpg.connect(url, timeout=3)
    try:
        await con.execute(sql)
    finally:
        await con.close()


def start_pgvector_server() -> tuple[Any, str]:
    """PostgreSQL 16 with pgvector from the `pgserver` package, in a fresh temp dir; returns (server, admin URL)."""
    import os
    import tempfile

    import pgserver

    parent = tempfile.mkdtemp(prefix="memproxy-pgvector-")
    os.chmod(parent, 0o755)  # as root, pgserver runs postgres as its own user, which must reach the data dir
    server = pgserver.get_server(os.path.join(parent, "pg"), cleanup_mode="delete")
    server.parent_dir = parent
    return server, server.get_uri()


def stop_pgvector_server(server: Any) -> None:
    import shutil

    server.cleanup()
    shutil.rmtree(server.parent_dir, ignore_errors=True)


def run_blocking(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion from sync code, even when called inside a running loop (a session fixture)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def create_database(admin_url: str) -> tuple[str, str]:
    """Create a randomly named database; returns (its name, its URL)."""
    name = f"memproxy_test_{secrets.token_hex(4)}"
    run_blocking(admin(admin_url, f'CREATE DATABASE "{name}"'))
    return name, with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    run_blocking(admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def create_schema(database_url: str) -> tuple[str, str]:
    """A fresh empty schema in the database; returns (its name, a URL whose connections use it)."""
    name = f"t_{secrets.token_hex(6)}"
    await admin(database_url, f'CREATE SCHEMA "{name}"')
    return name, with_search_path(database_url, name)


async def drop_schema(database_url: str, name: str) -> None:
    await admin(database_url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


async def bench_schemas(url: str) -> set[str]:
    """The schemas bench.pgbench made in the database and has not dropped."""
    con = await asyncpg.connect(url, timeout=3)
    try:
        return {r[0] for r in await con.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_%'")}
    finally:
        await con.close()
