"""Archival memory (`/v1/agents/{id}/archival-memory`) and recall search (`/v1/agents/messages/search`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from memory.longterm import LongTermMemory, Passage, RecallRecord, SearchHit
from memory.longterm.format import archival_results
from memory.longterm.timefilter import parse_range
from proxy.api.lookup import is_id, require_agent, runtime
from proxy.api.protocol import embedding_config_json, iso
from proxy.api.wire.archival import MessageSearch, PassageCreate, PassageListQuery, PassageSearchQuery
from proxy.errors import APIError, not_found
from proxy.http import json_response, query_bool, query_int

SEARCH_MODES = ("hybrid", "vector", "fts")


def passage_json(passage: Passage, embedding_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": passage.id, "text": passage.text, "tags": list(passage.tags), "metadata": dict(passage.metadata),
        "agent_id": passage.agent_id, "archive_id": None, "source_id": None, "file_id": None, "file_name": None,
        "created_at": iso(passage.created_at), "updated_at": iso(passage.created_at), "is_deleted": False,
        "created_by_id": None, "last_updated_by_id": None,
        "embedding": None, "embedding_config": embedding_config,
    }


def check_dates(start: Any, end: Any, names: tuple[str, str]) -> None:
    """422 naming the bound that does not parse (the search itself reports a start after the end)."""
    for value, name, is_end in ((start, names[0], False), (end, names[1], True)):
        try:
            parse_range(None, value) if is_end else parse_range(value, None)
        except ValueError as exc:
            raise APIError(422, f"bad date filter: {exc}", param=name) from None


def _longterm(request: Request) -> LongTermMemory:
    longterm = runtime(request).longterm
    if longterm is None:
        raise APIError(503, "long-term memory is not available", code="longterm_unavailable")
    return longterm


async def list_passages(request: Request, query: PassageListQuery) -> Response:
    live = await require_agent(request)
    q = request.query_params
    for cursor in ("after", "before"):
        if q.get(cursor) and not is_id("passage", q[cursor]):
            raise APIError(422, f"`{cursor}` must be a passage id", param=cursor)
    passages = await _longterm(request).list_passages(
        live.id, after=q.get("after"), before=q.get("before"), limit=query_int(request, "limit", 100),
        search=q.get("search") or None, ascending=query_bool(request, "ascending", True))
    config = embedding_config_json(live.agent, None)
    return json_response([passage_json(p, config) for p in passages])


async def create_passage(request: Request, body: PassageCreate) -> Response:
    rt = runtime(request)
    live = await require_agent(request)
    text = body.text
    if not text.strip():
        raise APIError(422, "`text` is required and must not be empty", param="text")
    tags = body.tags or []
    passages = await _longterm(request).add_passages(live.id, [(text, tags)])
    await rt.memory.refresh_archival(live)
    config = embedding_config_json(live.agent, None)
    return json_response([passage_json(p, config) for p in passages])


async def delete_passage(request: Request) -> Response:
    rt = runtime(request)
    live = await require_agent(request)
    passage_id = request.path_params["passage_id"]
    if not is_id("passage", passage_id) or not await _longterm(request).delete_passage(live.id, passage_id):
        raise not_found("passage", passage_id)
    await rt.memory.refresh_archival(live)
    return json_response({"id": passage_id, "deleted": True})


async def search_passages(request: Request, query: PassageSearchQuery) -> Response:
    live = await require_agent(request)
    mode = query.tag_match_mode or "any"
    check_dates(query.start_datetime, query.end_datetime, ("start_datetime", "end_datetime"))
    try:
        hits = await _longterm(request).search_passages(
            live.id, query.query, tags=query.tags, tag_match_mode=mode,
            top_k=query.top_k or 10, start=query.start_datetime,
            end=query.end_datetime, tz=live.agent.timezone)
    except ValueError as exc:
        raise APIError(422, f"bad date filter: {exc}", param="start_datetime") from None
    zone = live.agent.timezone
    results = [{"id": hit.record.id, **item} for hit, item in zip(hits, archival_results(hits, zone))]
    return json_response({"results": results, "count": len(results)})


async def search_messages(request: Request, body: MessageSearch) -> Response:
    """Recall search over one agent's whole history (a required `agent_id` keeps results scoped)."""
    rt = runtime(request)
    if not body.agent_id:
        raise APIError(422, "`agent_id` is required: searches never span agents", param="agent_id")
    live = await require_agent(request, body.agent_id)
    check_dates(body.start_date, body.end_date, ("start_date", "end_date"))
    try:
        hits = await _longterm(request).search_recall(
            live.id, body.query or "", roles=list(body.roles or ()) or None, limit=min(body.limit or 10, 100),
            start=body.start_date, end=body.end_date, mode=body.search_mode or "hybrid")
    except ValueError as exc:
        raise APIError(422, f"bad date filter: {exc}", param="start_date") from None
    messages = {m.id: m for m in await rt.store.get_messages([h.record.id for h in hits])}
    return json_response([_message_hit(h, messages.get(h.record.id)) for h in hits])


def _message_hit(hit: SearchHit, stored: Any) -> dict[str, Any]:
    record = hit.record
    assert isinstance(record, RecallRecord)
    message = {"id": record.id, "agent_id": record.agent_id, "role": record.role,
               "content": [{"type": "text", "text": record.text}], "created_at": iso(record.created_at),
               "run_id": getattr(stored, "run_id", None), "name": getattr(stored, "name", None),
               "tool_call_id": getattr(stored, "tool_call_id", None)}
    return {"embedded_text": record.text, "message": message, "rrf_score": hit.rrf_score,
            "vector_rank": hit.vector_rank, "fts_rank": hit.fts_rank, "search_mode": hit.search_mode}
