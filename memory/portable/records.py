"""The portable record shapes: one JSON object per record, `{"kind": ..., <the record's fields>}`.

Every field of the record dataclasses is written (dates as ISO 8601 with their offset), so a file
round-trips a backend exactly. Reading is strict: a missing or unknown field, or a value of the wrong
type, is a `FormatError` naming the record's line and the field, never a silent default.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from datetime import datetime, timezone
from typing import Any, Union

import re

from memory.longterm.records import Passage, PassageWithVector
from memory.longterm.sql import ID_PATTERN
from memory.mcp_servers import McpServer
from memory.models import Agent, Block, Message, Run, Tool

FORMAT = "memproxy-export"
# 2: MCP servers (kind `mcp_server`) are exported. A version 1 file (none) is still read.
VERSION = 2

Record = Agent | Block | Message | Run | Tool | McpServer

# The order kinds appear in a file: everything a record refers to comes before it (an agent's MCP tools are
# named by their server's record).
KINDS: dict[str, type[Any]] = {"mcp_server": McpServer, "tool": Tool, "block": Block, "agent": Agent, "run": Run,
                               "message": Message, "passage": Passage}
# An MCP server's id has an underscore in its prefix (`mcp_server-<uuid>`).
_MCP_ID = re.compile(r"^mcp_server-[0-9a-f-]{36}$")
# Store tables by record kind (passages live in long-term memory).
TABLES = {"tool": "tools", "block": "blocks", "agent": "agents", "run": "runs", "message": "messages"}


class FormatError(ValueError):
    """The file is not a memproxy export this version can read; the message says where and why."""


def header(source: str, embedding_model: str | None, created_at: datetime | None = None) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "source": source, "embedding_model": embedding_model,
            "created_at": (created_at or datetime.now(timezone.utc)).isoformat()}


def check_header(value: Any) -> dict[str, Any]:
    """The header, if this version can read the file; else FormatError saying why."""
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise FormatError(f"line 1: not a memproxy export (the first line must name the format {FORMAT!r})")
    version = value.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise FormatError("line 1: the header has no integer version")
    if version > VERSION:
        raise FormatError(f"the file is format version {version}, newer than this memproxy reads ({VERSION}); "
                          "import it with a newer memproxy")
    return value


def to_record(kind: str, value: Any, vector: list[float] | None = None) -> dict[str, Any]:
    """The JSON object for one record (`vector` only for passages)."""
    out: dict[str, Any] = {"kind": kind}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        out[f.name] = item.isoformat() if isinstance(item, datetime) else item
    if kind == "passage":
        out["vector"] = vector
    return out


def end_record(counts: dict[str, int]) -> dict[str, Any]:
    return {"kind": "end", "counts": dict(counts)}


def from_record(obj: Any, line: int) -> tuple[str, Any]:
    """(kind, record) for one line; a passage comes as (Passage, vector). FormatError on anything off."""
    if not isinstance(obj, dict):
        raise FormatError(f"line {line}: a record must be a JSON object")
    kind = obj.get("kind")
    if kind == "end":
        counts = obj.get("counts")
        if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
            raise FormatError(f"line {line}: the end record needs counts per kind")
        return "end", counts
    if kind not in KINDS:
        raise FormatError(f"line {line}: unknown record kind {kind!r}")
    cls = KINDS[kind]
    values = {k: v for k, v in obj.items() if k != "kind"}
    vector = values.pop("vector", None) if kind == "passage" else None
    hints = _hints(kind)
    for name in values:
        if name not in hints:
            raise FormatError(f"line {line}: {kind} has no field {name!r}")
    args: dict[str, Any] = {}
    for name, hint in hints.items():
        if name not in values:
            raise FormatError(f"line {line}: {kind} lacks field {name!r}")
        args[name] = _value(hint, values[name], f"line {line}: {kind}.{name}")
    for name in ("id", "agent_id"):
        pattern = _MCP_ID if kind == "mcp_server" and name == "id" else ID_PATTERN
        if name in args and not pattern.match(args[name]):
            raise FormatError(f"line {line}: {kind}.{name} is not a memproxy id: {args[name]!r}")
    record = cls(**args)
    if kind == "passage":
        if vector is not None and not (isinstance(vector, list) and vector
                                       and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector)):
            raise FormatError(f"line {line}: passage.vector must be a list of numbers or null")
        passage: PassageWithVector = (record, vector)
        return kind, passage
    return kind, record


@functools.cache
def _hints(kind: str) -> dict[str, Any]:
    """Each field's type, in field order (resolving the annotations costs far more than a record: once per kind)."""
    hints = typing.get_type_hints(KINDS[kind])
    return {f.name: hints[f.name] for f in dataclasses.fields(KINDS[kind])}


def _value(hint: Any, value: Any, where: str) -> Any:
    """`value` checked against a field's type (the handful of types the records use)."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _value(option, value, where)
            except FormatError as exc:
                errors.append(exc)
        raise errors[0]
    if hint is datetime:
        if not isinstance(value, str):
            raise FormatError(f"{where} must be an ISO 8601 date string")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise FormatError(f"{where} is not an ISO 8601 date: {value!r}") from None
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed
    base = origin or hint
    expected: Any = {str: str, int: int, float: (int, float), bool: bool, list: list, dict: dict}.get(base)
    if expected is None:
        raise FormatError(f"{where}: unsupported type {hint!r}")  # a record field type this reader does not know
    if not isinstance(value, expected) or (base in (int, float) and isinstance(value, bool)):
        raise FormatError(f"{where} must be of type {base.__name__}")
    if base is list and typing.get_args(hint) and typing.get_args(hint)[0] is str:
        if not all(isinstance(v, str) for v in value):
            raise FormatError(f"{where} must be a list of strings")
    if base is dict and typing.get_args(hint)[1:] == (str,) and not all(isinstance(v, str) for v in value.values()):
        raise FormatError(f"{where} must map names to strings")
    return float(value) if base is float else value
