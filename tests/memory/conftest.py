"""Fixtures shared by the memory tests: a fresh store on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pg
import pytest

from memory.duckdb_store import DuckDBStore
from memory.postgres_store import PostgresStore
from memory.store import Store


@pytest.fixture(params=["duckdb", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened store in a temp dir (DuckDB) or on a fresh schema (PostgreSQL); a module's own `store` wins."""
    if request.param == "duckdb":
        db: Store = DuckDBStore(str(tmp_path / "data" / "memproxy.duckdb"))
        await db.open()
        yield db
        await db.close()
        return
    database = request.getfixturevalue("postgres_url")
    schema, url = await pg.create_schema(database)
    db = PostgresStore(url)
    await db.open()
    yield db
    await db.close()
    await pg.drop_schema(database, schema)


@pytest.fixture
async def pg_store(postgres_schema_url: str) -> AsyncIterator[PostgresStore]:
    """An opened PostgresStore on an empty schema of its own, for the PostgreSQL-only modules."""
    db = PostgresStore(postgres_schema_url)
    await db.open()
    yield db
    await db.close()
