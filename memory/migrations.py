"""The DuckDB schema as an ordered list of migrations, and the code that applies the pending ones."""

from __future__ import annotations

import duckdb

from memory.store import SchemaTooNewError

__all__ = ["MIGRATIONS", "SchemaTooNewError", "apply_migrations"]

# JSON columns are VARCHAR holding orjson output: the text is always valid, so DuckDB's JSON type would
# only re-validate it on every write. Timestamps are TIMESTAMPTZ (instants, read back as UTC).
# No foreign keys: DuckDB refuses ON CONFLICT updates of rows that a foreign key references.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE agents (
            id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            system VARCHAR NOT NULL,
            description VARCHAR,
            model VARCHAR NOT NULL,
            embedding VARCHAR,
            context_window_limit BIGINT,
            tools VARCHAR NOT NULL,
            tags VARCHAR NOT NULL,
            metadata VARCHAR NOT NULL,
            message_buffer_autoclear BOOLEAN NOT NULL,
            llm_params VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE blocks (
            id VARCHAR PRIMARY KEY,
            label VARCHAR NOT NULL,
            value VARCHAR NOT NULL,
            "limit" BIGINT NOT NULL,
            description VARCHAR,
            read_only BOOLEAN NOT NULL,
            metadata VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE agent_blocks (
            agent_id VARCHAR NOT NULL,
            block_id VARCHAR NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY (agent_id, block_id)
        );
        CREATE TABLE messages (
            id VARCHAR PRIMARY KEY,
            agent_id VARCHAR NOT NULL,
            seq BIGINT NOT NULL,
            role VARCHAR NOT NULL,
            content VARCHAR,
            tool_calls VARCHAR,
            tool_call_id VARCHAR,
            name VARCHAR,
            run_id VARCHAR,
            in_context BOOLEAN NOT NULL,
            metadata VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX messages_agent_seq ON messages (agent_id, seq);
        CREATE TABLE runs (
            id VARCHAR PRIMARY KEY,
            agent_id VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            stop_reason VARCHAR,
            steps INTEGER NOT NULL,
            usage VARCHAR NOT NULL,
            timings VARCHAR NOT NULL,
            error VARCHAR,
            metadata VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            completed_at TIMESTAMPTZ
        );
        CREATE INDEX runs_agent ON runs (agent_id);
        """,
    ),
    (
        2,
        # An agent's seq orders its conversation, so two messages must never share one. A database
        # written before this rule may hold duplicates: those agents are renumbered in their order.
        """
        DROP INDEX messages_agent_seq;
        UPDATE messages SET seq = renumbered.seq
        FROM (
            SELECT id, row_number() OVER (PARTITION BY agent_id ORDER BY seq, created_at, id) AS seq
            FROM messages
            WHERE agent_id IN (SELECT agent_id FROM messages GROUP BY agent_id, seq HAVING count(*) > 1)
        ) AS renumbered
        WHERE messages.id = renumbered.id;
        """,
    ),
    # Its own transaction: DuckDB's index build would still see the rows as they were before the UPDATE.
    (3, "CREATE UNIQUE INDEX messages_agent_seq ON messages (agent_id, seq);"),
    (
        4,
        # Custom tools, and each agent's tool environment variables (a JSON object, '{}' for none).
        """
        CREATE TABLE tools (
            id VARCHAR PRIMARY KEY,
            name VARCHAR NOT NULL,
            source_code VARCHAR NOT NULL,
            json_schema VARCHAR NOT NULL,
            description VARCHAR NOT NULL,
            tags VARCHAR NOT NULL,
            return_char_limit BIGINT NOT NULL,
            metadata VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );
        CREATE UNIQUE INDEX tools_name ON tools (name);
        ALTER TABLE agents ADD COLUMN tool_env VARCHAR DEFAULT '{}';
        """,
    ),    # Letta's per-agent `timezone`; agents written before it keep seeing UTC dates.
    (5, "ALTER TABLE agents ADD COLUMN timezone VARCHAR NOT NULL DEFAULT 'UTC';"),
    # MCP servers (memory/mcp_servers.py): transport config and registered tools as JSON.
    (
        6,
        """
        CREATE TABLE mcp_servers (
            id VARCHAR PRIMARY KEY,
            server_name VARCHAR NOT NULL,
            type VARCHAR NOT NULL,
            config VARCHAR NOT NULL,
            tools VARCHAR NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        );
        CREATE UNIQUE INDEX mcp_servers_name ON mcp_servers (server_name);
        """,
    ),
    (
        7,
        # Letta's tool rules per agent (approvals included), and a tool's default approval requirement.
        # DuckDB cannot alter a table that has an index: the name index goes, and comes back in 8.
        """
        ALTER TABLE agents ADD COLUMN tool_rules VARCHAR NOT NULL DEFAULT '[]';
        DROP INDEX tools_name;
        ALTER TABLE tools ADD COLUMN default_requires_approval BOOLEAN NOT NULL DEFAULT false;
        """,
    ),
    (8, "CREATE UNIQUE INDEX tools_name ON tools (name);"),
    # The highest turn-journal record in the tables (memory/duckdb_journal.py); one row.
    (9, "CREATE TABLE journal_state (applied BIGINT NOT NULL); INSERT INTO journal_state VALUES (0);"),
    # How many times the agent's stored history changed other than by a turn's append (Store.history_since).
    (10, "ALTER TABLE agents ADD COLUMN reshapes BIGINT NOT NULL DEFAULT 0;"),
]


def apply_migrations(con: duckdb.DuckDBPyConnection, migrations: list[tuple[int, str]] = MIGRATIONS) -> list[int]:
    """Apply every migration not yet recorded in `schema_migrations`, each in its own transaction.

    Returns the versions applied now (empty when the schema was already current).
    """
    versions = [version for version, _ in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"migration versions must be unique and increasing: {versions}")
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
    )
    applied = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    unknown = applied - set(versions)
    if unknown:
        raise SchemaTooNewError(f"database has schema versions {sorted(unknown)} this memproxy does not know")
    newly: list[int] = []
    for version, sql in migrations:
        if version in applied:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        newly.append(version)
    return newly
