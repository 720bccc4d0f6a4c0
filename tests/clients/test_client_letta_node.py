"""Letta's own Node SDK (`@letta-ai/letta-client` on npm, run with node) against memproxy's Letta API.

The Node SDK trusts what it receives, so each response it got is validated here against the types the
Python SDK generates from the same OpenAPI document, as its strict mode does.
"""

from __future__ import annotations

from typing import Any, List

from letta_client._models import validate_type
from letta_client.types import AgentState, BlockResponse, ModelListResponse
from letta_client.types.agents import (LettaResponse, LettaStreamingResponse, Message, PassageCreateResponse,
                                       PassageListResponse, PassageSearchResponse, Run)

from helpers import sim_headers
from test_client_letta_python import TOOL_THEN_ANSWER


def test_node_sdk_tour_validates_and_auto_paginates(server, node) -> None:
    out = node.run("letta_sdk.mjs", {
        "scenario": "tour", "baseURL": server.base_url,
        "toolHeaders": sim_headers(script=TOOL_THEN_ANSWER), "streamHeaders": sim_headers(reply="Streamed reply."),
        "replyHeaders": sim_headers(reply="Done in the background.")}, timeout=120)
    shapes: dict[str, Any] = {
        "agents": List[AgentState], "retrieved": AgentState, "updated": AgentState, "agentPages": List[AgentState],
        "agentBlocks": List[BlockResponse], "block": BlockResponse, "blockUpdated": BlockResponse,
        "shared": BlockResponse, "attached": AgentState, "sharers": List[AgentState], "detached": AgentState,
        "blockList": List[BlockResponse], "models": ModelListResponse, "passages": PassageCreateResponse,
        "passageList": PassageListResponse, "search": PassageSearchResponse, "response": LettaResponse,
        "stream": List[LettaStreamingResponse], "history": List[Message], "run": Run, "runDone": Run,
        "runs": List[Run]}
    typed = {name: validate_type(type_=shape, value=out[name]) for name, shape in shapes.items()}

    ids = out["ids"]
    assert set(ids) <= {a.id for a in typed["agentPages"]} and typed["updated"].name == "renamed"
    assert typed["retrieved"].timezone == "Europe/Paris"
    assert [b.label for b in typed["agentBlocks"]] == ["human", "persona", "policy"]
    assert sorted(a.id for a in typed["sharers"]) == sorted(ids)
    assert typed["shared"].id in {b.id for b in typed["blockList"]}
    assert [m.model for m in typed["models"]] == ["sim-small", "sim-large"]
    assert typed["search"].results[0].id == typed["passages"][0].id

    response = typed["response"]
    assert [m.message_type for m in response.messages] == \
        ["assistant_message", "tool_call_message", "tool_return_message", "assistant_message"]
    assert response.stop_reason.stop_reason == "end_turn" and response.usage.step_count == 2
    events = typed["stream"]
    chunks = [e for e in events if e.message_type == "assistant_message"]
    assert "".join(c.content for c in chunks) == "Streamed reply." and len({c.id for c in chunks}) == 1
    assert [e.message_type for e in events[-2:]] == ["stop_reason", "usage_statistics"]
    assert [m.message_type for m in typed["history"][:2]] == ["user_message", "assistant_message"]
    assert typed["run"].background and typed["runDone"].status == "completed"
    assert typed["runs"][0].id == typed["run"].id and len(typed["runs"]) == 3  # two pages of runs
    assert out["cancel"] == {}
