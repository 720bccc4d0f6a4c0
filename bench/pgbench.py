"""`--backend postgres`: each bench data dir becomes a schema in a PostgreSQL database, seeded with SQL.

Without `--database-url` a throwaway database is created on the local server (trust auth at
127.0.0.1:5432, `MEMPROXY_BENCH_POSTGRES_ADMIN_URL` to change it) and dropped at the end; with one,
the bench works in that database, in schemas named `bench_<hex>` it creates and drops. memproxy gets
the schema through the URL's `search_path`. The seeding mirrors bench/seed.py (DuckDB) statement for
statement, and also writes the recall rows PostgreSQL keeps in the messages' transaction, so memproxy
starts with nothing to reconcile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from memory.backends import redact_url
from memory.postgres_migrations import apply_migrations

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# The template's rows copied into each new data dir (long-term memory tables start empty).
COPIED_TABLES = ("agents", "blocks", "agent_blocks", "messages", "runs", "tools")
QUESTION = ("'Question ' || s.i || ': what should I pack for the trip, and can you remind me about the dog sitter?'")
ANSWER = ("'Answer ' || s.i || ': pack light layers and a rain jacket; I will remind you about Miso''s sitter on "
          "Friday.'")

T = TypeVar("T")


def _with(url: str, *, database: str | None = None, schema: str | None = None) -> str:
    parts = urlsplit(url)
    path = parts.path if database is None else "/" + database
    query = parts.query
    if schema is not None:
        query = "&".join(q for q in (query, f"search_path={schema},public") if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


async def _on(url: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    con = await asyncpg.connect(url, timeout=10)
    try:
        return await work(con)
    finally:
        await con.close()


def _run(url: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run from the bench's sync set-up code, which may itself be called inside the suites' event loop."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _on(url, work)).result()  # type: ignore[arg-type]


@contextlib.contextmanager
def schema_url(database_url: str | None, name: str) -> Iterator[str]:
    """The URL of a fresh schema (in a throwaway database without `database_url`), dropped after."""
    pg = PgBench(database_url)
    try:
        yield pg.url_for(Path(name))
    finally:
        pg.close()


def add_database_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=None,
                        help="the database to work in (a schema, dropped after); default a throwaway database on "
                             "the local server")


class PgBench:
    """The PostgreSQL side of a bench run: one schema per data dir, all dropped by `close`."""

    def __init__(self, database_url: str | None, admin_url: str = DEFAULT_ADMIN_URL) -> None:
        self.admin_url = admin_url
        self.owned_database: str | None = None
        if database_url is None:
            self.owned_database = f"memproxy_bench_{secrets.token_hex(4)}"
            _run(admin_url, lambda con: con.execute(f'CREATE DATABASE "{self.owned_database}"'))
            database_url = _with(admin_url, database=self.owned_database)
        self.database_url = database_url
        self.schemas: dict[Path, str] = {}

    def describe(self) -> str:
        where = f"throwaway database {self.owned_database}" if self.owned_database else "given database"
        return f"postgresql {redact_url(self.database_url)} ({where})"

    def url_for(self, data_dir: Path) -> str:
        """The URL memproxy serves `data_dir` from: a schema of its own, created (and migrated) on first use."""
        if data_dir not in self.schemas:
            schema = f"bench_{secrets.token_hex(5)}"
            url = _with(self.database_url, schema=schema)

            async def create(con: asyncpg.Connection) -> None:
                await con.execute(f'CREATE SCHEMA "{schema}"')

            _run(self.database_url, create)
            self.schemas[data_dir] = schema
            _run(url, lambda con: apply_migrations(con))
        return _with(self.database_url, schema=self.schemas[data_dir])

    def copy(self, source: Path, target: Path) -> None:
        """A new data dir holding the source's rows (memproxy must not be running on either)."""
        url = self.url_for(target)
        src = self.schemas[source]

        async def copy(con: asyncpg.Connection) -> None:
            async with con.transaction():
                for table in COPIED_TABLES:
                    await con.execute(f'INSERT INTO {table} SELECT * FROM "{src}".{table}')

        _run(url, copy)

    def clone_agents(self, data_dir: Path, template_id: str, count: int, messages: int, tag: str, *,
                     autoclear: bool, in_context: int, context_window: int | None = None) -> list[str]:
        """bench.seed.clone_agents in PostgreSQL; recall rows included."""

        async def clone(con: asyncpg.Connection) -> list[str]:
            async with con.transaction():
                await con.execute("CREATE TEMP TABLE new_agents ON COMMIT DROP AS SELECT 'agent-' || "
                                  "gen_random_uuid()::text AS id, i FROM generate_series(0, $1::int - 1) i", count)
                cols = await _columns(con, "agents")
                overrides = {"id": "n.id", "name": f"'{tag}-' || n.i",
                             "message_buffer_autoclear": "true" if autoclear else "a.message_buffer_autoclear"}
                if context_window is not None:
                    overrides["context_window_limit"] = str(int(context_window))
                select = _select_list(cols, overrides, "a")
                await con.execute(f"INSERT INTO agents SELECT {select} FROM agents a, new_agents n WHERE a.id = $1",
                                  template_id)
                await con.execute("CREATE TEMP TABLE new_blocks ON COMMIT DROP AS SELECT n.id AS agent_id, "
                                  "ab.block_id AS src, ab.position, 'block-' || gen_random_uuid()::text AS id "
                                  "FROM new_agents n, agent_blocks ab WHERE ab.agent_id = $1", template_id)
                select = _select_list(await _columns(con, "blocks"), {"id": "nb.id"}, "b")
                await con.execute(f"INSERT INTO blocks SELECT {select} FROM new_blocks nb JOIN blocks b ON b.id = nb.src")
                await con.execute("INSERT INTO agent_blocks (agent_id, block_id, position) "
                                  "SELECT agent_id, id, position FROM new_blocks")
                if messages:
                    await con.execute(
                        "INSERT INTO messages (id, agent_id, seq, role, content, tool_calls, tool_call_id, name, "
                        "run_id, in_context, metadata, created_at) "
                        "SELECT 'message-' || gen_random_uuid()::text, n.id, s.i + 1, "
                        "CASE WHEN s.i % 2 = 0 THEN 'user' ELSE 'assistant' END, "
                        f"CASE WHEN s.i % 2 = 0 THEN {QUESTION} ELSE {ANSWER} END, "
                        "NULL, NULL, NULL, NULL, s.i >= $1::int - $2::int, '{}', "
                        "now() - make_interval(secs => $1::int - s.i) "
                        "FROM new_agents n, generate_series(0, $1::int - 1) s(i)", messages, in_context)
                    await con.execute("INSERT INTO recall (id, agent_id, role, text, created_at) "
                                      "SELECT m.id, m.agent_id, m.role, m.content, m.created_at "
                                      "FROM messages m JOIN new_agents n ON n.id = m.agent_id")
                return [row[0] for row in await con.fetch("SELECT id FROM new_agents ORDER BY i")]

        return _run(self.url_for(data_dir), clone)

    def count_rows(self, data_dir: Path) -> dict[str, int]:
        async def count(con: asyncpg.Connection) -> dict[str, int]:
            return {t: int(await con.fetchval(f"SELECT count(*) FROM {t}"))
                    for t in ("agents", "blocks", "messages", "runs")}

        return _run(self.url_for(data_dir), count)

    def close(self) -> None:
        """Drop every schema made (or the throwaway database, with everything in it)."""
        if self.owned_database is not None:
            name, self.owned_database = self.owned_database, None
            _run(self.admin_url, lambda con: con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            for schema in self.schemas.values():
                _run(self.database_url, lambda con, s=schema: con.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE'))
        self.schemas.clear()


async def _columns(con: asyncpg.Connection, table: str) -> list[str]:
    rows = await con.fetch("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                           "AND table_name = $1 ORDER BY ordinal_position", table)
    return [row[0] for row in rows]


def _select_list(columns: list[str], overrides: dict[str, str], alias: str) -> str:
    return ", ".join(overrides.get(c, f'{alias}."{c}"') for c in columns)
