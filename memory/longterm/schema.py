"""The two table layouts and the conversions between their rows and the record dataclasses."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from memory.longterm.records import Passage, RecallRecord

_TS = pa.timestamp("us", tz="UTC")

# `vector` is not listed: it is appended once the embedding size is known (see tables.py).
PASSAGE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("created_at", _TS),
        pa.field("embedded", pa.bool_()),
        pa.field("metadata", pa.string()),  # a JSON object
    ]
)
RECALL_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("role", pa.string()),
        pa.field("text", pa.string()),
        pa.field("created_at", _TS),
        pa.field("embedded", pa.bool_()),
    ]
)
PASSAGE_COLUMNS = ["id", "agent_id", "text", "tags", "created_at", "metadata"]
RECALL_COLUMNS = ["id", "agent_id", "role", "text", "created_at"]


def as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def passage_row(passage: Passage) -> dict[str, Any]:
    return {
        "id": passage.id,
        "agent_id": passage.agent_id,
        "text": passage.text,
        "tags": passage.tags,
        "created_at": passage.created_at,
        "metadata": json.dumps(passage.metadata),
    }


def recall_row(record: RecallRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "agent_id": record.agent_id,
        "role": record.role,
        "text": record.text or "",
        "created_at": as_utc(record.created_at),
    }


def passage_from_row(row: dict[str, Any]) -> Passage:
    metadata = json.loads(row["metadata"]) if row.get("metadata") else {}
    return Passage(row["id"], row["agent_id"], row["text"] or "", list(row["tags"] or []), row["created_at"], metadata)


def recall_from_row(row: dict[str, Any]) -> RecallRecord:
    return RecallRecord(row["id"], row["agent_id"], row["role"] or "", row["text"] or "", row["created_at"])
