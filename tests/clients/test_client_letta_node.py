"""Letta's own Node SDK (`@letta-ai/letta-client` on npm, run with node) against memproxy's Letta API.

The Node SDK trusts what it receives, so each response it got is validated here against the types the
Python SDK generates from the same OpenAPI document, as its strict mode does.
"""

from __future__ import annotations

from typing import Any, List, Optional

from letta_client._models import validate_type
from letta_client.types import (AgentImportFileResponse, AgentState, BlockResponse, HealthResponse,
                                McpServerCreateResponse, McpServerListResponse, McpServerRetrieveResponse,
                                McpServerUpdateResponse, ModelListResponse, Tool)
from letta_client.types.conversations import CompactionResponse
from letta_client.types.mcp_servers import ToolListResponse as McpToolList
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


ROLL_SOURCE = ('def roll(sides: int) -> str:\n    """Roll a die.\n\n    Args:\n        sides: How many faces.\n    """\n'
               '    return f"rolled a {sides}"\n')


def _validated(out: dict[str, Any], shapes: dict[str, Any]) -> dict[str, Any]:
    """Each response the Node SDK got, validated against the Python SDK's type of the same response."""
    return {name: validate_type(type_=shape, value=out[name]) for name, shape in shapes.items()}


def test_node_sdk_tools_mcp_agent_files_and_the_rest_validate(server, node, mcp_url: str) -> None:
    out = node.run("letta_sdk.mjs", {
        "scenario": "resources", "baseURL": server.base_url, "mcpURL": mcp_url, "rollSource": ROLL_SOURCE,
        "rollHeaders": sim_headers(script=[{"tool_calls": [{"name": "roll", "arguments": {"sides": 6}}]},
                                           {"reply": "A six."}]),
        "addHeaders": sim_headers(script=[{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]},
                                          {"reply": "Five."}])}, timeout=120)
    typed = _validated(out, {
        "health": HealthResponse, "tool": Tool, "toolRetrieved": Tool, "toolUpdated": Tool, "toolUpserted": Tool,
        "toolPages": List[Tool], "toolAttached": AgentState, "toolTurn": LettaResponse, "toolDetached": AgentState,
        "mcp": McpServerCreateResponse, "mcpRetrieved": McpServerRetrieveResponse,
        "mcpUpdated": McpServerUpdateResponse, "mcpList": McpServerListResponse, "mcpTools": McpToolList,
        "mcpTool": Tool, "mcpRegistered": Tool, "mcpAttached": AgentState, "mcpTurn": LettaResponse,
        "afterMcp": AgentState, "imported": AgentImportFileResponse, "copy": AgentState,
        "compacted": CompactionResponse, "reset": Optional[AgentState], "agentTools": List[Tool],
        "approval": Optional[AgentState], "blockRetrieved": BlockResponse, "blockUpdated": BlockResponse})
    assert [t.name for t in typed["agentTools"]] == [t.name for t in typed["toolDetached"].tools]
    assert typed["approval"].tool_rules[-1].type == "requires_approval" and out["passageDeleted"]["deleted"]
    assert typed["blockUpdated"].value == "changed" and typed["blockRetrieved"].value == "temporary"
    tool = typed["tool"]
    assert typed["toolUpserted"].id == tool.id and typed["toolUpserted"].tags == ["dice", "games"]
    assert typed["toolUpdated"].description == "Roll one die." and tool.id in [t.id for t in typed["toolPages"]]
    assert "roll" in [t.name for t in typed["toolAttached"].tools]
    assert "roll" not in [t.name for t in typed["toolDetached"].tools]
    turn = typed["toolTurn"].messages
    assert [m.message_type for m in turn] == ["tool_call_message", "tool_return_message", "assistant_message"]
    assert turn[1].status == "success" and "rolled a 6" in turn[1].tool_return

    assert typed["mcp"].mcp_server_type == "streamable_http" and typed["mcpUpdated"].server_name == "node-mcp-renamed"
    assert typed["mcp"].id in [s.id for s in typed["mcpList"]] and typed["mcpTool"].name == "add"
    assert typed["mcpRegistered"].tool_type == "external_mcp"
    assert [m.message_type for m in typed["mcpTurn"].messages][1] == "tool_return_message"
    assert typed["mcpTurn"].messages[1].tool_return == "5" and out["mcpDeleted"] is None
    assert "add" not in [t.name for t in typed["afterMcp"].tools]

    assert out["exported"]["agents"][0]["name"] == "node-more"
    assert typed["copy"].name == "node-more-copy" and typed["imported"].agent_ids == [typed["copy"].id]
    assert out["context"]["num_messages"] > 0 and out["preview"]["messages"][-1]["content"] == "next"
    assert isinstance(out["searched"], list) and out["openaiModels"]["object"] == "list"
    for deleted in ("blockDeleted", "toolDeleted", "agentDeleted"):
        assert out[deleted]["deleted"] is True  # Letta's reference: 200 with a body


def test_node_sdk_follows_a_background_run_by_stream(resumable_server, node) -> None:
    out = node.run("letta_sdk.mjs", {"scenario": "runs", "baseURL": resumable_server.base_url,
                                     "replyHeaders": sim_headers(reply="Done in the background.")}, timeout=120)
    typed = _validated(out, {"run": Run, "followed": List[LettaStreamingResponse],
                             "resumed": List[LettaStreamingResponse], "resumedByGet": List[LettaStreamingResponse],
                             "runDone": Run, "runs": List[Run]})
    assert [e.model_dump() for e in typed["resumedByGet"]] == [e.model_dump() for e in typed["resumed"]]
    followed = typed["followed"]
    assert [e.seq_id for e in followed] == list(range(1, len(followed) + 1))
    assert [e.message_type for e in followed][-2:] == ["stop_reason", "usage_statistics"]
    assert [e.model_dump() for e in typed["resumed"]] == [e.model_dump() for e in followed[2:]]
    assert typed["runDone"].status == "completed" and [r.id for r in typed["runs"]] == [typed["run"].id]
