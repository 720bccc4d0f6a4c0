"""LanceDB's side of export and import: passages with their vectors, a keyset page at a time.

A passage moves with its id, dates, tags, metadata and vector. A vector that does not fit the target
(another size, or no vector column in the database) is dropped: the row is stored for full-text search
and the target's re-embedder gives it a vector later, as for any write whose embedding failed.
"""

from __future__ import annotations

from typing import Any

from memory.longterm import sql
from memory.longterm.lancedb_loader import ColumnOrdering
from memory.longterm.records import Passage, PassageWithVector
from memory.longterm.schema import PASSAGE_COLUMNS, passage_from_row, passage_row
from memory.longterm.tables import VECTOR, MemoryTable

async def lance_passage_page(table: MemoryTable, after: str | None, limit: int) -> list[PassageWithVector]:
    """Every agent's passages with id > `after`, ascending by id."""
    columns = PASSAGE_COLUMNS + (["embedded", VECTOR] if table.dim is not None else [])
    where = "true" if after is None else f"id > {sql.quote(after)}"
    order = [ColumnOrdering(column_name="id", ascending=True)]
    rows = await table.rows(where, columns, limit=limit, order=order)
    return [(passage_from_row(row), _vector(row)) for row in rows]


async def lance_present_ids(table: MemoryTable, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    return {row["id"] for row in await table.rows(sql.id_in(ids), ["id"])}


def lance_rows(passages: list[Passage]) -> list[dict[str, Any]]:
    for passage in passages:
        sql.check_id(passage.id, "passage id")
        sql.check_id(passage.agent_id, "agent_id")
    return [passage_row(p) for p in passages]


def _vector(row: dict[str, Any]) -> list[float] | None:
    vector = row.get(VECTOR)
    return [float(v) for v in vector] if vector is not None and row.get("embedded") else None
