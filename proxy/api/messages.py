"""An agent's message history as LettaMessages, and resetting its in-context window."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from proxy.api.agents import state
from proxy.api.lookup import descending, page, require_agent, runtime
from proxy.api.protocol import letta_messages
from proxy.api.wire.messages import MessageListQuery
from proxy.http import json_response


async def list_messages(request: Request, query: MessageListQuery) -> Response:
    """`query` is checked by its model; `page()` turns the same cursors into the store's terms."""
    rt = runtime(request)
    live = await require_agent(request)
    desc = descending(request)
    await rt.memory.settled(live.id)
    wanted = page(request, "message", 100)
    messages = wanted.arrange(await rt.store.list_messages(
        live.id, before=wanted.before, after=wanted.after, limit=wanted.limit, ascending=wanted.ascending))
    out: list[dict[str, Any]] = []
    for message in messages:
        parts = letta_messages(message)
        # Newest first means the parts of one stored message are reversed too.
        out.extend(reversed(parts) if desc else parts)
    return json_response(out)


async def reset_messages(request: Request) -> Response:
    rt = runtime(request)
    live = await require_agent(request)
    async with rt.turns.hold(live.id) as held:
        live = held or live  # several processes: the agent as of the lock, not a copy older than it
        await rt.budget.quiesce(live)  # a summary finishing after the reset would come back into context
        await rt.memory.reset_messages(live)
    return json_response(state(rt, live))
