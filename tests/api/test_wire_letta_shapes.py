"""The wire models name every field Letta's own SDK requires, under the same JSON name (the schemathesis run
then checks the server's answers against these models, and the SDK tests check them against the SDK)."""

from __future__ import annotations

import importlib

import pytest
from pydantic import BaseModel

PAIRS = [
    ("letta_client.types.agent_state:AgentState", "proxy.api.wire.agents:AgentState"),
    ("letta_client.types.block_response:BlockResponse", "proxy.api.wire.blocks:Block"),
    ("letta_client.types.tool:Tool", "proxy.api.wire.tools:Tool"),
    ("letta_client.types.passage:Passage", "proxy.api.wire.archival:Passage"),
    ("letta_client.types.model:Model", "proxy.api.wire.service:LettaModel"),
    ("letta_client.types.health_response:HealthResponse", "proxy.api.wire.service:Health"),
    ("letta_client.types.agents.run:Run", "proxy.api.wire.messages:Run"),
    ("letta_client.types.agents.letta_response:LettaResponse", "proxy.letta.protocol:LettaResponse"),
    ("letta_client.types.agents.assistant_message:AssistantMessage", "proxy.api.wire.messages:AssistantMessage"),
    ("letta_client.types.agents.reasoning_message:ReasoningMessage", "proxy.api.wire.messages:ReasoningMessage"),
    ("letta_client.types.agents.tool_call_message:ToolCallMessage", "proxy.api.wire.messages:ToolCallMessage"),
    ("letta_client.types.tool_return_message:ToolReturnMessage", "proxy.api.wire.messages:ToolReturnMessage"),
    ("letta_client.types.agents.system_message:SystemMessage", "proxy.api.wire.messages:SystemMessage"),
]


def load(spec: str) -> type[BaseModel]:
    module, name = spec.split(":")
    model = getattr(importlib.import_module(module), name)
    assert issubclass(model, BaseModel)
    return model


@pytest.mark.parametrize(("sdk", "ours"), PAIRS, ids=[p[1].rsplit(":", 1)[1] for p in PAIRS])
def test_every_field_the_sdk_requires_is_declared(sdk: str, ours: str) -> None:
    theirs = load(sdk)
    required = {field.alias or name for name, field in theirs.model_fields.items() if field.is_required()}
    declared = {field.alias or name for name, field in load(ours).model_fields.items()}
    assert required <= declared, sorted(required - declared)
