"""Read SSE with its `id:` lines (tests/helpers.raw_events drops them)."""

from __future__ import annotations

import json
from typing import Any

import httpx


def parse(text: str) -> list[tuple[int | None, Any]]:
    """(id, payload) of every data event, in order; keep-alive comments are skipped."""
    out: list[tuple[int | None, Any]] = []
    for block in text.split("\n\n"):
        event_id: int | None = None
        data = None
        for line in block.split("\n"):
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data = line[6:]
        if data is not None:
            out.append((event_id, data if data == "[DONE]" else json.loads(data)))
    return out


def read_some(response: httpx.Response, count: int) -> list[tuple[int | None, Any]]:
    """The first `count` data events of a live stream (then the caller closes it)."""
    buffer = ""
    for text in response.iter_text():
        buffer += text
        complete = buffer[:buffer.rfind("\n\n") + 2] if "\n\n" in buffer else ""
        events = parse(complete)
        if len(events) >= count:
            return events[:count]
    return parse(buffer)


def ids(events: list[tuple[int | None, Any]]) -> list[int | None]:
    return [event_id for event_id, _ in events]
