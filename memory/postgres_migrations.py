"""The PostgreSQL schema as ordered, versioned migrations, applied once under an advisory lock.

Ids are `TEXT COLLATE "C"` so `ORDER BY id` is byte order, as `Store`'s keyset id scans promise.
JSON columns are TEXT holding orjson output, read and written as the DuckDB store does.
"""

from __future__ import annotations

import asyncpg

from memory.store import SchemaTooNewError

# Full-text search indexes this many leading characters of a passage or message (see migration 7).
FTS_PREFIX_CHARS = 100_000

# Any constant works; it only has to be the same for every memproxy process on the database.
MIGRATION_LOCK_KEY = 0x6D656D70726F7879 & 0x7FFFFFFFFFFFFFFF  # "memproxy"

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE agents (
            id TEXT COLLATE "C" PRIMARY KEY,
            name TEXT NOT NULL,
            system TEXT NOT NULL,
            description TEXT,
            model TEXT NOT NULL,
            embedding TEXT,
            context_window_limit BIGINT,
            tools TEXT NOT NULL,
            tags TEXT NOT NULL,
            metadata TEXT NOT NULL,
            message_buffer_autoclear BOOLEAN NOT NULL,
            llm_params TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX agents_created ON agents (created_at, id);
        CREATE TABLE blocks (
            id TEXT COLLATE "C" PRIMARY KEY,
            label TEXT NOT NULL,
            value TEXT NOT NULL,
            "limit" BIGINT NOT NULL,
            description TEXT,
            read_only BOOLEAN NOT NULL,
            metadata TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX blocks_created ON blocks (created_at, id);
        CREATE TABLE agent_blocks (
            agent_id TEXT COLLATE "C" NOT NULL,
            block_id TEXT COLLATE "C" NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (agent_id, block_id)
        );
        CREATE INDEX agent_blocks_block ON agent_blocks (block_id);
        CREATE TABLE messages (
            id TEXT COLLATE "C" PRIMARY KEY,
            agent_id TEXT COLLATE "C" NOT NULL,
            seq BIGINT NOT NULL,
            role TEXT NOT NULL,
            content TEXT,
            tool_calls TEXT,
            tool_call_id TEXT,
            name TEXT,
            run_id TEXT,
            in_context BOOLEAN NOT NULL,
            metadata TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            CONSTRAINT messages_agent_seq UNIQUE (agent_id, seq)
        );
        CREATE TABLE runs (
            id TEXT COLLATE "C" PRIMARY KEY,
            agent_id TEXT COLLATE "C" NOT NULL,
            status TEXT NOT NULL,
            stop_reason TEXT,
            steps INTEGER NOT NULL,
            usage TEXT NOT NULL,
            timings TEXT NOT NULL,
            error TEXT,
            metadata TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            completed_at TIMESTAMPTZ
        );
        CREATE INDEX runs_created ON runs (created_at, id);
        CREATE INDEX runs_agent ON runs (agent_id, created_at, id);
        """,
    ),
    (
        2,
        # Long-term memory. The tsvector is generated from the text, so full-text search can never lag
        # a write; 'simple' keeps every word as written (no stemming, no stop words), like LanceDB's FTS.
        """
        CREATE TABLE passages (
            id TEXT COLLATE "C" PRIMARY KEY,
            agent_id TEXT COLLATE "C" NOT NULL,
            text TEXT NOT NULL,
            tags TEXT[] NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            metadata TEXT NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
        );
        CREATE INDEX passages_agent_created ON passages (agent_id, created_at, id);
        CREATE INDEX passages_tsv ON passages USING gin (tsv);
        CREATE TABLE recall (
            id TEXT COLLATE "C" PRIMARY KEY,
            agent_id TEXT COLLATE "C" NOT NULL,
            role TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
        );
        CREATE INDEX recall_agent_created ON recall (agent_id, created_at);
        CREATE INDEX recall_tsv ON recall USING gin (tsv);
        """,
    ),
    (
        3,
        # Custom tools, and each agent's tool environment variables (a JSON object, '{}' for none).
        """
        CREATE TABLE tools (
            id TEXT COLLATE "C" PRIMARY KEY,
            name TEXT NOT NULL,
            source_code TEXT NOT NULL,
            json_schema TEXT NOT NULL,
            description TEXT NOT NULL,
            tags TEXT NOT NULL,
            return_char_limit BIGINT NOT NULL,
            metadata TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );
        CREATE UNIQUE INDEX tools_name ON tools (name);
        ALTER TABLE agents ADD COLUMN tool_env TEXT NOT NULL DEFAULT '{}';
        """,
    ),
    # Letta's per-agent `timezone` (the embedded store's migration 5); earlier agents keep UTC dates.
    (4, "ALTER TABLE agents ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC';"),
    # MCP servers (memory/mcp_servers.py; the embedded store's migration 6).
    (
        5,
        """
        CREATE TABLE mcp_servers (
            id TEXT COLLATE "C" PRIMARY KEY,
            server_name TEXT NOT NULL,
            type TEXT NOT NULL,
            config TEXT NOT NULL,
            tools TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );
        CREATE UNIQUE INDEX mcp_servers_name ON mcp_servers (server_name);
        """,
    ),
    # The fencing token of the last turn lock that committed for the agent (several processes, one database).
    (6, "ALTER TABLE agents ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;"),
    (
        7,
        # A tsvector holds at most 1 MB, and a long text of distinct words exceeds it: the insert would fail,
        # and recall rows are written in the turn's own transaction. Only the first 100,000 characters are
        # indexed for full text (at most ~6 bytes of tsvector per character: far below the limit).
        f"""
        DROP INDEX recall_tsv;
        ALTER TABLE recall DROP COLUMN tsv;
        ALTER TABLE recall ADD COLUMN tsv tsvector
            GENERATED ALWAYS AS (to_tsvector('simple', left(text, {FTS_PREFIX_CHARS}))) STORED;
        CREATE INDEX recall_tsv ON recall USING gin (tsv);
        DROP INDEX passages_tsv;
        ALTER TABLE passages DROP COLUMN tsv;
        ALTER TABLE passages ADD COLUMN tsv tsvector
            GENERATED ALWAYS AS (to_tsvector('simple', left(text, {FTS_PREFIX_CHARS}))) STORED;
        CREATE INDEX passages_tsv ON passages USING gin (tsv);
        """,
    ),
    (
        8,
        # The embedded store's migration 7: tool rules per agent, a tool's default approval requirement.
        """
        ALTER TABLE agents ADD COLUMN tool_rules TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE tools ADD COLUMN default_requires_approval BOOLEAN NOT NULL DEFAULT false;
        """,
    ),
    # How many times the agent's stored history changed other than by a turn's append (Store.history_since).
    (9, "ALTER TABLE agents ADD COLUMN reshapes BIGINT NOT NULL DEFAULT 0;"),
]


async def enable_vectors(con: asyncpg.Connection) -> bool:
    """Create pgvector and the embedding columns if the server has the extension; False when it has not.

    Not a numbered migration: whether it can run depends on the server, so it is tried at every start.
    """
    await con.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        try:
            async with con.transaction():
                await con.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except asyncpg.PostgresError:
            return False
        async with con.transaction():
            for table in ("passages", "recall"):
                await con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS embedding vector")
        return True
    finally:
        await con.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def apply_migrations(con: asyncpg.Connection, migrations: list[tuple[int, str]] = MIGRATIONS) -> list[int]:
    """Apply every migration not yet in `schema_migrations`, each in its own transaction; returns those applied now.

    The whole check-and-apply holds a session advisory lock, so processes starting together take turns:
    the first migrates, the others find nothing left to do.
    """
    versions = [version for version, _ in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"migration versions must be unique and increasing: {versions}")
    await con.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )
        applied = {row[0] for row in await con.fetch("SELECT version FROM schema_migrations")}
        unknown = applied - set(versions)
        if unknown:
            raise SchemaTooNewError(f"database has schema versions {sorted(unknown)} this memproxy does not know")
        newly: list[int] = []
        for version, sql in migrations:
            if version in applied:
                continue
            async with con.transaction():
                await con.execute(sql)
                await con.execute("INSERT INTO schema_migrations VALUES ($1, now())", version)
            newly.append(version)
        return newly
    finally:
        await con.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
