"""Per-request simulator options, read from the body's `sim` field, `X-Sim-*` headers and `[[sim:...]]` text.

Precedence: body `sim` > headers > magic text in the last user message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson


class SimOptionError(ValueError):
    """A sim option or marker could not be understood; answered with HTTP 400."""


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a number")
    return float(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise TypeError("expected an integer")
        return int(value)
    return int(value)


def _as_status(value: Any) -> int:
    status = _as_int(value)
    if not 400 <= status <= 599:
        raise ValueError("expected an HTTP error status (400-599)")
    return status


def _as_count(value: Any) -> int:
    count = _as_int(value)
    if count < 0:
        raise ValueError("expected a count >= 0")
    return count


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise TypeError("expected a boolean")


def _as_json(value: Any) -> Any:
    # Headers carry JSON as text; the body and magic text carry it already parsed.
    if isinstance(value, (str, bytes)):
        return orjson.loads(value)
    return value


OPTION_PARSERS: dict[str, Callable[[Any], Any]] = {
    "ttft_ms": _as_float,
    "token_delay_ms": _as_float,
    "reply_tokens": _as_count,
    "reply": str,
    "tool_calls": _as_json,
    "script": _as_json,
    "content_then_tool_calls": _as_bool,
    "fail_status": _as_status,
    "fail_after_chunks": _as_count,
    "stall_ms": _as_float,
    "stall_after_chunks": _as_count,
    "fail_times": _as_count,
    "retry_after": _as_float,
    "key": str,
    "max_context_tokens": _as_count,
}

FAILURE_OPTIONS = ("fail_status", "fail_after_chunks", "stall_ms", "stall_after_chunks")

_HEADER_PREFIX = b"x-sim-"


def options_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Raw option values from `X-Sim-<Key>` headers (ASGI header names arrive lower-cased)."""
    found: dict[str, Any] = {}
    for name, value in headers:
        if name.startswith(_HEADER_PREFIX):
            key = name[len(_HEADER_PREFIX):].decode("latin-1").replace("-", "_")
            try:
                found[key] = value.decode("utf-8")
            except UnicodeDecodeError:
                found[key] = value.decode("latin-1")
    return found


def merge_options(*sources: Any) -> dict[str, Any]:
    """Merge option sources, later ones winning, and coerce every value to its type."""
    merged: dict[str, Any] = {}
    for source in sources:
        if source is None:
            continue
        if not isinstance(source, dict):
            raise SimOptionError("sim options must be a JSON object")
        merged.update(source)
    for key, value in merged.items():
        parser = OPTION_PARSERS.get(key)
        if parser is None:
            raise SimOptionError(f"unknown sim option {key!r}; known: {', '.join(OPTION_PARSERS)}")
        try:
            merged[key] = parser(value)
        except (TypeError, ValueError) as exc:
            raise SimOptionError(f"bad value for sim option {key!r}: {exc}") from None
    return merged


@dataclass(slots=True)
class Markers:
    """What the `[[sim:...]]` and `[[call:...]]` markers in one user message asked for."""

    text: str
    sim: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)


_JSON = json.JSONDecoder()
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _read_json(text: str, pos: int, marker: str) -> tuple[Any, int]:
    try:
        return _JSON.raw_decode(text, pos)
    except ValueError as exc:
        raise SimOptionError(f"bad JSON in {marker} marker: {exc}") from None


def _close(text: str, pos: int, marker: str) -> int:
    pos = _skip_spaces(text, pos)
    if not text.startswith("]]", pos):
        raise SimOptionError(f"{marker} marker is not closed with ']]'")
    return pos + 2


def parse_markers(text: str) -> Markers:
    """Pull the sim/call markers out of user text; the returned text has them removed."""
    if "[[" not in text:
        return Markers(text)
    markers = Markers("")
    kept: list[str] = []
    pos = 0
    while (start := text.find("[[", pos)) >= 0:
        if text.startswith("[[sim:", start):
            value, end = _read_json(text, _skip_spaces(text, start + 6), "[[sim:")
            if not isinstance(value, dict):
                raise SimOptionError("[[sim: marker must hold a JSON object")
            markers.sim.update(value)
        elif text.startswith("[[call:", start):
            name = _TOOL_NAME.match(text, start + 7)
            if name is None:
                raise SimOptionError("[[call: marker needs a tool name")
            end = _skip_spaces(text, name.end())
            args: Any = {}
            if not text.startswith("]]", end):
                args, end = _read_json(text, end, "[[call:")
            markers.calls.append((name.group(), args))
        else:
            kept.append(text[pos:start + 2])
            pos = start + 2
            continue
        kept.append(text[pos:start])
        pos = _close(text, end, "[[sim:" if text.startswith("[[sim:", start) else "[[call:")
    kept.append(text[pos:])
    markers.text = " ".join("".join(kept).split())
    return markers
