"""An agent's core memory: its blocks by label, and attaching or detaching shared blocks."""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from memory.agents import LiveAgent
from memory.models import Block
from proxy.api.agents import state
from proxy.api.blocks import save_edit
from proxy.api.lookup import conflict, page_of, require_agent, require_block, runtime, save_agent
from proxy.api.protocol import block_json
from proxy.errors import APIError
from proxy.api.wire.blocks import BlockUpdate
from proxy.api.wire.common import PageQuery
from proxy.http import json_response


def block_by_label(live: LiveAgent, label: str) -> Block:
    block = live.block(label)
    if block is None:
        raise APIError(404, f"agent {live.id!r} has no block labelled {label!r}", param="block_label",
                       code="not_found")
    return block


async def list_agent_blocks(request: Request, query: PageQuery) -> Response:
    live = await require_agent(request)
    return json_response([block_json(b) for b in page_of(request, list(live.blocks), "block", lambda b: b.id)])


async def get_agent_block(request: Request) -> Response:
    live = await require_agent(request)
    return json_response(block_json(block_by_label(live, request.path_params["block_label"])))


async def modify_agent_block(request: Request, body: BlockUpdate) -> Response:
    live = await require_agent(request)
    block = block_by_label(live, request.path_params["block_label"])
    saved = await save_edit(runtime(request), block, body.given())
    return json_response(block_json(saved))


async def attach_block(request: Request) -> Response:
    rt = runtime(request)
    live = await require_agent(request)
    block = await require_block(rt.memory, request.path_params["block_id"])
    if block.id not in live.agent.block_ids:
        if live.block(block.label) is not None:
            raise conflict(f"agent {live.id!r} already has a block labelled {block.label!r}", param="block_id")
        live = await save_agent(rt.memory, replace(live.agent, block_ids=[*live.agent.block_ids, block.id]))
    return json_response(state(rt, live))


async def detach_block(request: Request) -> Response:
    rt = runtime(request)
    live = await require_agent(request)
    block = await require_block(rt.memory, request.path_params["block_id"])
    if block.id in live.agent.block_ids:
        kept = [b for b in live.agent.block_ids if b != block.id]
        live = await save_agent(rt.memory, replace(live.agent, block_ids=kept))
    return json_response(state(rt, live))
