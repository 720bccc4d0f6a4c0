"""Resolve path and query ids to live records, turning every miss into the right API error."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request

from memory.agents import AgentMemory, LiveAgent
from memory.models import Agent, Block
from memory.store import NotFound
from proxy.errors import APIError, not_found, unprocessable
from proxy.http import query_int
from proxy.runtime import Runtime

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID_PATTERNS: dict[str, re.Pattern[str]] = {}
T = TypeVar("T")


def runtime(request: Request) -> Runtime:
    return request.app.state.rt  # type: ignore[no-any-return]


def is_id(kind: str, value: str) -> bool:
    """True when `value` has the `<kind>-<uuid>` shape."""
    pattern = _ID_PATTERNS.get(kind)
    if pattern is None:
        pattern = _ID_PATTERNS[kind] = re.compile(rf"^{re.escape(kind)}-{_UUID}$")
    return bool(pattern.match(value))


async def require_agent(request: Request, agent_id: str | None = None) -> LiveAgent:
    """The live agent named in the path; 404 when the id is malformed or unknown."""
    agent_id = agent_id if agent_id is not None else request.path_params["agent_id"]
    if not is_id("agent", agent_id):
        raise not_found("agent", agent_id)
    live = await runtime(request).memory.get(agent_id)
    if live is None:
        raise not_found("agent", agent_id)
    return live


async def require_block(memory: AgentMemory, block_id: str) -> Block:
    """A copy of the block, safe to edit before saving; 404 when malformed or unknown."""
    if not is_id("block", block_id):
        raise not_found("block", block_id)
    block = await memory.get_block(block_id)
    if block is None:
        raise not_found("block", block_id)
    return block


async def save_agent(memory: AgentMemory, agent: Agent) -> LiveAgent:
    """Persist a modified agent; 404 naming what vanished (the agent, or a block) while the request was in flight."""
    try:
        return await memory.update_agent(agent)
    except NotFound as exc:
        raise not_found(exc.kind, exc.ident) from None


def cursor(request: Request, name: str, kind: str) -> str | None:
    """A pagination cursor from the query string; it must be an id of the listed kind."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not is_id(kind, value):
        raise unprocessable(f"query parameter {name!r} must be a {kind} id", param=name)
    return value


def descending(request: Request, default: bool = True) -> bool:
    """Letta's `order` (asc | desc), with the older `ascending` flag honoured when given."""
    order = request.query_params.get("order")
    if order is not None and order != "":
        if order not in ("asc", "desc"):
            raise unprocessable("query parameter 'order' must be 'asc' or 'desc'", param="order")
        return order == "desc"
    ascending = request.query_params.get("ascending")
    if ascending is not None and ascending != "":
        return ascending.lower() not in ("1", "true", "yes")
    return default


@dataclass(frozen=True)
class Page:
    """One page request translated for the store, whose cursors and order are chronological."""

    before: str | None
    after: str | None
    ascending: bool
    limit: int | None
    backwards: bool  # the store was asked in the opposite order; flip its rows

    def arrange(self, rows: list[T]) -> list[T]:
        return rows[::-1] if self.backwards else rows


def page(request: Request, kind: str, default_limit: int) -> Page:
    """Letta's cursors are relative to the requested order: with `order=desc` the next page is
    `after=<last id>` (older), and `before=<first id>` pages back to the items just above it."""
    desc = descending(request)
    before, after = cursor(request, "before", kind), cursor(request, "after", kind)
    limit = query_int(request, "limit", default_limit, high=10000)
    # Paging back must return the items nearest the cursor, so read towards it and flip.
    backwards = before is not None and after is None and limit is not None
    if desc:
        before, after = after, before
    return Page(before=before, after=after, ascending=desc if backwards else not desc, limit=limit,
                backwards=backwards)


def conflict(message: str, param: str | None = None) -> APIError:
    return APIError(409, message, param=param, code="conflict")
