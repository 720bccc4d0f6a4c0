"""How records map to DuckDB rows: column lists, the SQL built from them, and row <-> dataclass conversion."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property, lru_cache
from typing import Any

import orjson
import pyarrow as pa

from memory import secretbox
from memory.json_bounds import json_fault
from memory.models import Agent, Block, Message, Run, Tool

Row = tuple[Any, ...]
log = logging.getLogger("memproxy")

# Stored JSON is encoded again inside responses a few levels down; orjson stops at 254 levels.
MAX_STORED_JSON_DEPTH = 128

# `list_contains(?, id)` is planned as a primary-key index scan; `id IN (SELECT unnest(?))` scans the table.
ID_IN_LIST = "list_contains(?::VARCHAR[], id)"


@dataclass(frozen=True)
class Table:
    """A table's columns in storage order, each with the DuckDB type its values are bound as."""

    name: str
    columns: tuple[tuple[str, str], ...]

    @cached_property
    def select_list(self) -> str:
        """Columns to read; timestamps come back as naive UTC (reading TIMESTAMPTZ directly needs pytz)."""
        return ", ".join(
            f"timezone('UTC', {_quote(name)})" if sql_type == "TIMESTAMPTZ" else _quote(name)
            for name, sql_type in self.columns
        )

    @cached_property
    def insert_sql(self) -> str:
        """Insert one row, given as positional parameters in column order."""
        return self.insert_values_sql(1)

    @lru_cache(maxsize=16)  # noqa: B019 - the tables are module constants, never collected
    def insert_values_sql(self, rows: int) -> str:
        """Insert `rows` rows given as one flat parameter list; cheaper than `bulk_insert_sql` for a few rows."""
        names = ", ".join(_quote(name) for name, _ in self.columns)
        row = "(" + ", ".join("?" for _ in self.columns) + ")"
        return f"INSERT INTO {self.name} ({names}) VALUES " + ", ".join([row] * rows)

    @cached_property
    def bulk_insert_sql(self) -> str:
        """Insert many rows in one statement, one list parameter per column (see `as_columns`)."""
        names = ", ".join(_quote(name) for name, _ in self.columns)
        unnests = ", ".join(f"unnest(?::{sql_type}[])" for _, sql_type in self.columns)
        return f"INSERT INTO {self.name} ({names}) SELECT {unnests}"

    @lru_cache(maxsize=4)  # noqa: B019 - the tables are module constants, never collected
    def insert_from_sql(self, source: str) -> str:
        """Insert every row of `source` (a relation with this table's column names), by name."""
        names = ", ".join(_quote(name) for name, _ in self.columns)
        return f"INSERT INTO {self.name} ({names}) SELECT {names} FROM {source}"

    @cached_property
    def update_by_id_sql(self) -> str:
        """Overwrite every column but `id`; the id is the last parameter."""
        sets = ", ".join(f"{_quote(name)} = ?" for name, _ in self.columns if name != "id")
        return f"UPDATE {self.name} SET {sets} WHERE id = ?"


def _quote(name: str) -> str:
    return f'"{name}"'


AGENTS = Table("agents", (
    ("id", "VARCHAR"), ("name", "VARCHAR"), ("system", "VARCHAR"), ("description", "VARCHAR"),
    ("model", "VARCHAR"), ("embedding", "VARCHAR"), ("context_window_limit", "BIGINT"), ("tools", "VARCHAR"),
    ("tags", "VARCHAR"), ("metadata", "VARCHAR"), ("message_buffer_autoclear", "BOOLEAN"),
    ("llm_params", "VARCHAR"), ("created_at", "TIMESTAMPTZ"), ("updated_at", "TIMESTAMPTZ"), ("tool_env", "VARCHAR"),
    ("timezone", "VARCHAR"), ("tool_rules", "VARCHAR"),
))
TOOLS = Table("tools", (
    ("id", "VARCHAR"), ("name", "VARCHAR"), ("source_code", "VARCHAR"), ("json_schema", "VARCHAR"),
    ("description", "VARCHAR"), ("tags", "VARCHAR"), ("return_char_limit", "BIGINT"), ("metadata", "VARCHAR"),
    ("created_at", "TIMESTAMPTZ"), ("updated_at", "TIMESTAMPTZ"), ("default_requires_approval", "BOOLEAN"),
))
BLOCKS = Table("blocks", (
    ("id", "VARCHAR"), ("label", "VARCHAR"), ("value", "VARCHAR"), ("limit", "BIGINT"), ("description", "VARCHAR"),
    ("read_only", "BOOLEAN"), ("metadata", "VARCHAR"), ("created_at", "TIMESTAMPTZ"), ("updated_at", "TIMESTAMPTZ"),
))
MESSAGES = Table("messages", (
    ("id", "VARCHAR"), ("agent_id", "VARCHAR"), ("seq", "BIGINT"), ("role", "VARCHAR"), ("content", "VARCHAR"),
    ("tool_calls", "VARCHAR"), ("tool_call_id", "VARCHAR"), ("name", "VARCHAR"), ("run_id", "VARCHAR"),
    ("in_context", "BOOLEAN"), ("metadata", "VARCHAR"), ("created_at", "TIMESTAMPTZ"),
))
RUNS = Table("runs", (
    ("id", "VARCHAR"), ("agent_id", "VARCHAR"), ("status", "VARCHAR"), ("stop_reason", "VARCHAR"),
    ("steps", "INTEGER"), ("usage", "VARCHAR"), ("timings", "VARCHAR"), ("error", "VARCHAR"),
    ("metadata", "VARCHAR"), ("created_at", "TIMESTAMPTZ"), ("completed_at", "TIMESTAMPTZ"),
))


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def _field(row_id: Any, column: str, text: str | None, kind: type, default: Any, items: type | None = None) -> Any:
    """A JSON column decoded, or a fresh `default()` (logged, without content) when a reader could not use it.

    A row planted or written by an older version must never turn a whole listing into a 500.
    """
    if text is None:
        return default()
    try:
        value = orjson.loads(text)
        fault = None
    except orjson.JSONDecodeError:
        value, fault = None, "is not valid JSON"
    if fault is None and not isinstance(value, kind):
        fault = f"is not a JSON {kind.__name__}"
    if fault is None and items is not None and not all(isinstance(item, items) for item in value):
        fault = f"holds items that are not {items.__name__}"
    # Counting brackets is C speed; only a value with that many containers can be too deep.
    if fault is None and text.count("{") + text.count("[") > MAX_STORED_JSON_DEPTH:
        fault = json_fault(value, MAX_STORED_JSON_DEPTH, nul=False)
    if fault is None:
        return value
    fallback = default()
    log.warning("stored row %s: column %s %s; read as %r instead", row_id, column, fault, fallback)
    return fallback


def _utc(value: datetime) -> datetime:
    # DuckDB's session reads naive UTC values; asyncpg's are UTC already, and `replace` costs ~1.4 us a row.
    return value if value.tzinfo is timezone.utc else value.replace(tzinfo=timezone.utc)


def agent_row(agent: Agent, box: secretbox.SecretBox | None = None) -> Row:
    return (
        agent.id, agent.name, agent.system, agent.description, agent.model, agent.embedding,
        agent.context_window_limit, _dump(agent.tools), _dump(agent.tags), _dump(agent.metadata),
        agent.message_buffer_autoclear, _dump(agent.llm_params), agent.created_at, agent.updated_at,
        secretbox.seal(agent.tool_env, box), agent.timezone, _dump(agent.tool_rules),
    )


def agent_from_row(row: Row, block_ids: list[str] | None, box: secretbox.SecretBox | None = None) -> Agent:
    (id_, name, system, description, model, embedding, context_window_limit, tools, tags, metadata,
     autoclear, llm_params, created_at, updated_at, tool_env, tz, tool_rules) = row
    return Agent(
        id=id_, name=name, system=system, description=description, model=model, embedding=embedding,
        context_window_limit=context_window_limit, tools=_field(id_, "tools", tools, list, list, str),
        tags=_field(id_, "tags", tags, list, list, str), metadata=_field(id_, "metadata", metadata, dict, dict),
        message_buffer_autoclear=autoclear, llm_params=_field(id_, "llm_params", llm_params, dict, dict),
        block_ids=list(block_ids or []), created_at=_utc(created_at), updated_at=_utc(updated_at),
        tool_env=_field(id_, "tool_env", secretbox.unseal_text(tool_env, box), dict, dict), timezone=tz or "UTC",
        tool_rules=_field(id_, "tool_rules", tool_rules, list, list, dict),
    )


def tool_row(tool: Tool) -> Row:
    return (
        tool.id, tool.name, tool.source_code, _dump(tool.json_schema), tool.description, _dump(tool.tags),
        tool.return_char_limit, _dump(tool.metadata), tool.created_at, tool.updated_at,
        tool.default_requires_approval,
    )


def tool_from_row(row: Row) -> Tool:
    id_, name, source_code, json_schema, description, tags, limit, metadata, created_at, updated_at, approval = row
    return Tool(
        id=id_, name=name, source_code=source_code, json_schema=_field(id_, "json_schema", json_schema, dict, dict),
        description=description, tags=_field(id_, "tags", tags, list, list, str), return_char_limit=limit,
        metadata=_field(id_, "metadata", metadata, dict, dict),
        created_at=_utc(created_at), updated_at=_utc(updated_at), default_requires_approval=bool(approval),
    )


def block_row(block: Block) -> Row:
    return (
        block.id, block.label, block.value, block.limit, block.description, block.read_only,
        _dump(block.metadata), block.created_at, block.updated_at,
    )


def block_from_row(row: Row) -> Block:
    id_, label, value, limit, description, read_only, metadata, created_at, updated_at = row
    return Block(
        id=id_, label=label, value=value, limit=limit, description=description, read_only=read_only,
        metadata=_field(id_, "metadata", metadata, dict, dict), created_at=_utc(created_at),
        updated_at=_utc(updated_at),
    )


def message_row(message: Message, in_context: bool) -> Row:
    tool_calls = None if message.tool_calls is None else _dump(message.tool_calls)
    return (
        message.id, message.agent_id, message.seq, message.role, message.content, tool_calls,
        message.tool_call_id, message.name, message.run_id, in_context, _dump(message.metadata), message.created_at,
    )


def message_from_row(row: Row) -> Message:
    (id_, agent_id, seq, role, content, tool_calls, tool_call_id, name, run_id, in_context, metadata,
     created_at) = row
    return Message(
        id=id_, agent_id=agent_id, seq=seq, role=role, content=content,
        tool_calls=_field(id_, "tool_calls", tool_calls, list, lambda: None, dict), tool_call_id=tool_call_id, name=name,
        run_id=run_id, in_context=in_context, metadata=_field(id_, "metadata", metadata, dict, dict),
        created_at=_utc(created_at),
    )


def run_row(run: Run) -> Row:
    return (
        run.id, run.agent_id, run.status, run.stop_reason, run.steps, _dump(run.usage), _dump(run.timings),
        run.error, _dump(run.metadata), run.created_at, run.completed_at,
    )


def run_from_row(row: Row) -> Run:
    (id_, agent_id, status, stop_reason, steps, usage, timings, error, metadata, created_at, completed_at) = row
    return Run(
        id=id_, agent_id=agent_id, status=status, stop_reason=stop_reason, steps=steps,
        usage=_field(id_, "usage", usage, dict, dict), timings=_field(id_, "timings", timings, dict, dict),
        error=error, metadata=_field(id_, "metadata", metadata, dict, dict),
        created_at=_utc(created_at), completed_at=None if completed_at is None else _utc(completed_at),
    )


def as_columns(rows: list[Row]) -> list[list[Any]]:
    """Transpose rows into one list per column, the parameters of `Table.bulk_insert_sql`."""
    return [list(column) for column in zip(*rows)]


# The Arrow type each column type is sent as; TIMESTAMPTZ as UTC, as the store's session reads naive values.
_ARROW_TYPES = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32(), "BOOLEAN": pa.bool_(),
                "TIMESTAMPTZ": pa.timestamp("us", tz="UTC")}


def arrow_rows(table: Table, columns: list[list[Any]]) -> pa.Table:
    """`as_columns` output as an Arrow table with `table`'s column names; raises `pa.ArrowException` for a value
    that does not fit its column's type."""
    return pa.table({name: pa.array(values, type=_ARROW_TYPES[sql_type])
                     for (name, sql_type), values in zip(table.columns, columns)})
