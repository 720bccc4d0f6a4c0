"""Letta's message union (what `GET .../messages` and the messages API answer with) and its Run."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from proxy.api.operations import RequestBody
from proxy.api.wire.common import PageQuery


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    date: datetime | None
    name: str | None
    otid: str | None
    sender_id: str | None
    step_id: str | None
    is_err: bool | None
    seq_id: int | None
    run_id: str | None


class UserMessage(_Base):
    message_type: Literal["user_message"]
    content: str | list[dict[str, Any]]


class SystemMessage(_Base):
    message_type: Literal["system_message"]
    content: str


class AssistantMessage(_Base):
    message_type: Literal["assistant_message"]
    content: str | list[dict[str, Any]]


class ReasoningMessage(_Base):
    message_type: Literal["reasoning_message"]
    reasoning: str
    source: str | None
    signature: str | None


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None
    arguments: str | None
    tool_call_id: str | None


class ToolCallMessage(_Base):
    message_type: Literal["tool_call_message"]
    tool_call: ToolCall
    tool_calls: list[ToolCall] | None


class ToolReturnMessage(_Base):
    message_type: Literal["tool_return_message"]
    tool_return: str
    status: Literal["success", "error"]
    tool_call_id: str
    stdout: list[str] | None
    stderr: list[str] | None


LettaMessage = Annotated[Union[UserMessage, SystemMessage, AssistantMessage, ReasoningMessage, ToolCallMessage,
                               ToolReturnMessage], Field(discriminator="message_type")]


class MessageListQuery(PageQuery):
    pass


class Usage(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Run(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    agent_id: str
    status: str
    stop_reason: str | None
    background: bool | None
    metadata: dict[str, Any] | None
    request_config: dict[str, Any] | None
    steps: int | None
    usage: Usage
    timings: dict[str, Any]
    error: Any
    ttft_ns: int | None
    total_duration_ns: int | None
    callback_url: str | None
    callback_sent_at: datetime | None
    callback_status_code: int | None
    callback_error: str | None
    base_template_id: str | None
    created_at: datetime | None
    completed_at: datetime | None


class RunListQuery(PageQuery):
    agent_id: str | None = None


class RunStreamRequest(RequestBody):
    """`POST /v1/runs/{run_id}/stream`: where to resume (Letta's body). `Last-Event-ID`, when sent, wins."""

    starting_after: Annotated[int, Field(ge=0)] | None = None
    include_pings: bool | None = None
    poll_interval: Annotated[float, Field(ge=0)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=10000)] | None = None
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False,
                                                 "examples": [{"starting_after": 0, "batch_size": 100}]})
