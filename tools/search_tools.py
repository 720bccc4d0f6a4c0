"""Long-term memory tools: search the conversation history, store and search archival passages."""

from __future__ import annotations

from typing import Any

from memory.longterm.api import LongTermMemory
from memory.longterm.format import format_archival_search, format_conversation_search
from tools.registry import ServerTool, ToolContext, ToolError

MAX_RESULTS = 50
ROLES = ("user", "assistant", "tool")


def _longterm(ctx: ToolContext) -> LongTermMemory:
    if ctx.longterm is None:
        raise ToolError("long-term memory is not available on this server")
    return ctx.longterm


def _query(args: dict[str, Any], name: str = "query") -> str:
    query = args.get(name)
    if not isinstance(query, str):
        raise ToolError(f"`{name}` must be a string")
    return query


def _count(args: dict[str, Any], name: str, default: int) -> int:
    value = args.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ToolError(f"`{name}` must be a positive integer")
    return min(value, MAX_RESULTS)


def _strings(args: dict[str, Any], name: str) -> list[str] | None:
    value = args.get(name)
    if value is None or value == []:
        return None
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ToolError(f"`{name}` must be a list of strings")
    return value


async def conversation_search(ctx: ToolContext, args: dict[str, Any]) -> str:
    roles = _strings(args, "roles")
    if roles and not set(roles) <= set(ROLES):
        raise ToolError(f"`roles` may only hold {', '.join(ROLES)}")
    try:
        hits = await _longterm(ctx).search_recall(
            ctx.live.id, _query(args), roles=roles, limit=_count(args, "limit", 10),
            start=args.get("start_date"), end=args.get("end_date"), tz=ctx.timezone or "UTC")
    except ValueError as exc:
        raise ToolError(f"bad date filter: {exc}") from None
    return format_conversation_search(hits, tz=ctx.timezone or "UTC")


async def archival_memory_insert(ctx: ToolContext, args: dict[str, Any]) -> str:
    content = _query(args, "content")
    if not content.strip():
        raise ToolError("`content` must not be empty")
    tags = _strings(args, "tags") or []
    passages = await _longterm(ctx).add_passages(ctx.live.id, [(content, tags)])
    await ctx.memory.refresh_archival(ctx.live)
    return f"Stored in archival memory as {passages[0].id}" + (f" with tags {tags}." if tags else ".")


async def archival_memory_search(ctx: ToolContext, args: dict[str, Any]) -> str:
    mode = args.get("tag_match_mode") or "any"
    if mode not in ("any", "all"):
        raise ToolError("`tag_match_mode` must be `any` or `all`")
    try:
        hits = await _longterm(ctx).search_passages(
            ctx.live.id, _query(args), tags=_strings(args, "tags"), tag_match_mode=mode,
            top_k=_count(args, "top_k", 10), start=args.get("start_datetime"), end=args.get("end_datetime"),
            tz=ctx.timezone or "UTC")
    except ValueError as exc:
        raise ToolError(f"bad date filter: {exc}") from None
    return format_archival_search(hits, tz=ctx.timezone or "UTC")


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_DATE = "ISO 8601 date or datetime, inclusive; a date alone as an end means the end of that day."

SEARCH_TOOLS: tuple[ServerTool, ...] = (
    ServerTool(
        "conversation_search",
        "Search your whole conversation history, including messages no longer in your context, "
        "by meaning and by keywords.",
        _schema({"query": {"type": "string", "description": "What to look for."},
                 "roles": {"type": "array", "items": {"type": "string", "enum": list(ROLES)},
                           "description": "Only messages from these roles."},
                 "limit": {"type": "integer", "description": "Most results to return (default 10)."},
                 "start_date": {"type": "string", "description": _DATE},
                 "end_date": {"type": "string", "description": _DATE}},
                ["query"]),
        conversation_search,
    ),
    ServerTool(
        "archival_memory_insert",
        "Store a passage in your archival memory, your long-term store for facts that do not belong "
        "in a memory block. Tags help you find it again.",
        _schema({"content": {"type": "string", "description": "The text to store."},
                 "tags": {"type": "array", "items": {"type": "string"}, "description": "Optional tags."}},
                ["content"]),
        archival_memory_insert,
    ),
    ServerTool(
        "archival_memory_search",
        "Search your archival memory by meaning and keywords.",
        _schema({"query": {"type": "string", "description": "What to look for."},
                 "tags": {"type": "array", "items": {"type": "string"}, "description": "Filter by tags."},
                 "tag_match_mode": {"type": "string", "enum": ["any", "all"],
                                    "description": "Whether a passage needs any or all of the tags."},
                 "top_k": {"type": "integer", "description": "Most results to return (default 10)."},
                 "start_datetime": {"type": "string", "description": _DATE},
                 "end_datetime": {"type": "string", "description": _DATE}},
                ["query"]),
        archival_memory_search,
    ),
)
