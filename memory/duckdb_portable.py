"""The DuckDB side of export and import: keyset scans of whole tables and id membership (see Store.scan)."""

from __future__ import annotations

from typing import Any

import duckdb

from memory.duckdb_rows import (
    AGENTS,
    BLOCKS,
    ID_IN_LIST,
    MESSAGES,
    RUNS,
    TOOLS,
    Table,
    agent_from_row,
    block_from_row,
    message_from_row,
    run_from_row,
    tool_from_row,
)
from memory.secretbox import SecretBox
from memory.store import PORTABLE_KINDS

_TABLES: dict[str, Table] = {"tools": TOOLS, "blocks": BLOCKS, "agents": AGENTS, "runs": RUNS, "messages": MESSAGES}
_BLOCK_IDS = "(SELECT list(block_id ORDER BY position) FROM agent_blocks WHERE agent_id = agents.id)"


def _table(kind: str) -> Table:
    if kind not in PORTABLE_KINDS:
        raise ValueError(f"not a portable kind: {kind!r}")
    return _TABLES[kind]


def scan(con: duckdb.DuckDBPyConnection, kind: str, after: str | None, limit: int,
         box: SecretBox | None = None) -> list[Any]:
    """One keyset page of `kind`; agents' tool variables opened with `box` (export writes them in the clear)."""
    table = _table(kind)
    extra = f", {_BLOCK_IDS}" if kind == "agents" else ""
    sql = f"SELECT {table.select_list}{extra} FROM {table.name} WHERE id > ? ORDER BY id LIMIT ?"
    rows = con.execute(sql, [after or "", int(limit)]).fetchall()
    if kind == "agents":
        return [agent_from_row(row[:-1], row[-1], box) for row in rows]
    convert = {"tools": tool_from_row, "blocks": block_from_row, "runs": run_from_row, "messages": message_from_row}
    return [convert[kind](row) for row in rows]


def existing_ids(con: duckdb.DuckDBPyConnection, kind: str, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    sql = f"SELECT id FROM {_table(kind).name} WHERE {ID_IN_LIST}"
    return {row[0] for row in con.execute(sql, [list(ids)]).fetchall()}
