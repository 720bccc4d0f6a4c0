"""Input limits shared by every route: what a request may store, so that what is stored can always be read.

Every check raises a 422 naming the offending field; none of them writes anything.
"""

from __future__ import annotations

from typing import Any

import orjson

from memory.json_bounds import json_fault
from proxy.errors import unprocessable

# Free-form JSON (metadata, tool arguments, ...): far deeper than any real use, far below orjson's 254.
MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 64 * 1024
# Request bodies that are re-encoded (chat turns): the body sits a few levels inside what we send upstream.
MAX_BODY_DEPTH = 64
# The largest value a BIGINT column (and orjson) holds; every stored integer must fit.
MAX_INT = 2**63 - 1

# Characters, per kind of free-form string.
MAX_NAME_CHARS = 256  # agent names, model and embedding ids, tags, tool names, search modes
MAX_DESCRIPTION_CHARS = 10_000  # agent and block descriptions
MAX_TEXT_CHARS = 1_000_000  # system prompts, block values, archival passages, search queries
MAX_LIST_ITEMS = 1_000  # tags, tools, tool_ids, block_ids, roles
# Integer fields with a meaning: anything past these is a typo, not a wish.
MAX_BLOCK_LIMIT = 10_000_000
MAX_CONTEXT_WINDOW = 100_000_000
MAX_OUTPUT_TOKENS = 10_000_000


def check_text(value: str, field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """`value` if it is storable text: bounded, no NUL, encodable as UTF-8 (no lone surrogates)."""
    if len(value) > max_chars:
        raise unprocessable(f"{field!r} is {len(value)} characters; the limit is {max_chars}", param=field,
                            code="value_too_long")
    if "\x00" in value:
        raise unprocessable(f"{field!r} must not contain NUL characters", param=field)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise unprocessable(f"{field!r} is not valid Unicode text (lone surrogate)", param=field) from None
    return value


def check_int(value: int, field: str, low: int = 0, high: int = MAX_INT) -> int:
    """`value` if it lies in [low, high]; the default bound is what a BIGINT column and orjson can hold."""
    if not low <= value <= high:
        raise unprocessable(f"{field!r} must be between {low} and {high}", param=field)
    return value


def check_json(value: Any, field: str, max_depth: int = MAX_JSON_DEPTH, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """`value` if it is free-form JSON that will encode again later: bounded depth and size, clean text."""
    try:
        encoded = orjson.dumps(value)  # C speed: bounds the size before the walk below looks at each item
    except (orjson.JSONEncodeError, TypeError):
        raise unprocessable(f"{field!r} cannot be stored as JSON (too deep, or a number out of range)",
                            param=field) from None
    if len(encoded) > max_bytes:
        raise unprocessable(f"{field!r} is {len(encoded)} bytes as JSON; the limit is {max_bytes}", param=field,
                            code="value_too_long")
    fault = json_fault(value, max_depth)
    if fault is not None:
        raise unprocessable(f"{field!r} {fault}", param=field)
    return value

