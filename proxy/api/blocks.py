"""Standalone blocks (`/v1/blocks`); a block attached to several agents is one shared record."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from memory.models import Block
from proxy.api.agents import state
from proxy.api.bodies import apply_block_update, new_block
from proxy.api.lookup import conflict, cursor, is_id, page_of, require_block, runtime
from proxy.api.protocol import block_json
from proxy.api.wire.common import PageQuery
from proxy.api.wire.blocks import BlockCreate, BlockListQuery, BlockUpdate
from proxy.errors import not_found
from proxy.http import json_response, query_int
from proxy.runtime import Runtime


async def ensure_label_free(rt: Runtime, block: Block, label: str) -> None:
    """Renaming a shared block must not clash with another block on any agent that holds it."""
    for agent_id in await rt.store.agents_for_block(block.id):
        live = await rt.memory.get(agent_id)
        other = live.block(label) if live is not None else None
        if other is not None and other.id != block.id:
            raise conflict(f"agent {agent_id!r} already has a block labelled {label!r}", param="label")


async def save_edit(rt: Runtime, original: Block, body: dict[str, object]) -> Block:
    """Validate `body` against a copy of `original`, then persist it through the shared cache."""
    edited = replace(original, metadata=dict(original.metadata))
    if not apply_block_update(edited, body):
        return edited
    if edited.label != original.label:
        await ensure_label_free(rt, original, edited.label)
    return await rt.memory.save_block(edited)


async def create_block(request: Request, body: BlockCreate) -> Response:
    block = new_block(body.given(), "body")
    await runtime(request).memory.create_block(block)
    return json_response(block_json(block))


async def list_blocks(request: Request, query: BlockListQuery) -> Response:
    rt = runtime(request)
    blocks = await rt.store.list_blocks(
        label=query.label,
        before=cursor(request, "before", "block"),
        after=cursor(request, "after", "block"),
        limit=query_int(request, "limit", 50, high=10000),
    )
    return json_response([block_json(b) for b in blocks])


async def get_block(request: Request) -> Response:
    block = await require_block(runtime(request).memory, request.path_params["block_id"])
    return json_response(block_json(block))


async def modify_block(request: Request, body: BlockUpdate) -> Response:
    rt = runtime(request)
    block = await require_block(rt.memory, request.path_params["block_id"])
    saved = await save_edit(rt, block, body.given())
    return json_response(block_json(saved))


async def delete_block(request: Request) -> Response:
    block_id: str = request.path_params["block_id"]
    if not is_id("block", block_id) or not await runtime(request).memory.delete_block(block_id):
        raise not_found("block", block_id)
    return json_response({"id": block_id, "deleted": True})


async def list_agents_for_block(request: Request, query: PageQuery) -> Response:
    rt = runtime(request)
    block = await require_block(rt.memory, request.path_params["block_id"])
    agent_ids = page_of(request, await rt.store.agents_for_block(block.id), "agent", lambda i: i)
    out: list[dict[str, Any]] = []
    for agent_id in agent_ids:
        live = await rt.memory.get(agent_id)
        if live is not None:
            out.append(state(rt, live))
    return json_response(out)
