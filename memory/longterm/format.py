"""What the model reads back from `archival_memory_search` and `conversation_search`, in Letta's shapes.

archival_memory_search -> a JSON array of
    {"timestamp": "2025-09-29 14:03:11 UTC", "content": ..., "tags": [...],
     "relevance": {"rrf_score": ..., "vector_rank": ..., "fts_rank": ...}}
conversation_search -> "No results found." or "Showing N results: " + a JSON array of
    {"timestamp": ISO 8601 in the agent's zone, "time_ago": "3h ago", "role": ..., "relevance": {...,
     "search_mode": ...}, "content": ...}
Ranks that a search did not produce are left out, as Letta does.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from memory.longterm.records import Passage, RecallRecord, SearchHit


def archival_results(hits: list[SearchHit], tz: str = "UTC") -> list[dict[str, Any]]:
    """The result objects of an archival search (also the `results` of the REST search endpoint)."""
    zone = ZoneInfo(tz)
    results = []
    for hit in hits:
        passage = hit.record
        assert isinstance(passage, Passage)
        item: dict[str, Any] = {
            "timestamp": _local(passage.created_at, zone).strftime("%Y-%m-%d %H:%M:%S %Z"),
            "content": passage.text,
            "tags": list(passage.tags),
        }
        relevance = _relevance(hit, with_mode=False)
        if relevance:
            item["relevance"] = relevance
        results.append(item)
    return results


def format_archival_search(hits: list[SearchHit], tz: str = "UTC") -> str:
    return json.dumps(archival_results(hits, tz), ensure_ascii=False)


def format_conversation_search(hits: list[SearchHit], tz: str = "UTC", now: datetime | None = None) -> str:
    if not hits:
        return "No results found."
    zone = ZoneInfo(tz)
    now = (now or datetime.now(timezone.utc)).astimezone(zone)
    results = []
    for hit in hits:
        message = hit.record
        assert isinstance(message, RecallRecord)
        local = _local(message.created_at, zone)
        item: dict[str, Any] = {"timestamp": local.isoformat(), "time_ago": _ago(now - local), "role": message.role}
        relevance = _relevance(hit, with_mode=True)
        if relevance:
            item["relevance"] = relevance
        item["content"] = message.text
        results.append(item)
    return f"Showing {len(results)} results: " + json.dumps(results, ensure_ascii=False)


def _relevance(hit: SearchHit, *, with_mode: bool) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if hit.search_mode != "recent":  # an empty query ranks nothing, so there is no score to show
        info["rrf_score"] = round(hit.rrf_score, 6)
    if hit.vector_rank is not None:
        info["vector_rank"] = hit.vector_rank
    if hit.fts_rank is not None:
        info["fts_rank"] = hit.fts_rank
    if with_mode:
        info["search_mode"] = hit.search_mode
    return info


def _local(value: datetime | None, zone: ZoneInfo) -> datetime:
    if value is None:
        return datetime.fromtimestamp(0, timezone.utc).astimezone(zone)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(zone)


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"
