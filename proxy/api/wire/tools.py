"""Tools on the wire: Letta's ToolCreate and ToolUpdate bodies, and its Tool."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from proxy.api.operations import QueryParams, RequestBody
from proxy.api.wire.common import Description, Metadata, NameList, PageQuery, Text
from proxy.limits import MAX_INT


class ToolUpdate(RequestBody):
    """A custom Python tool: one function in `source_code`; its schema is derived unless `json_schema` is given."""

    source_code: Text | None = None
    description: Description | None = None
    tags: NameList | None = None
    json_schema: Metadata | None = None
    metadata: Metadata | None = None
    return_char_limit: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    source_type: Literal["python"] | None = None
    default_requires_approval: bool | None = Field(None, description="agents this tool is attached to from now "
                                                   "on wait for a human's approval before it runs")


class ToolCreate(ToolUpdate):
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False, "examples": [{"source_code": (
        "def roll(sides: int) -> int:\n    \"\"\"Roll a die.\n\n    Args:\n        sides: How many faces.\n    \"\"\"\n"
        "    return sides\n")}]})

    source_code: Text  # type: ignore[assignment]


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    description: str | None
    tool_type: str
    source_type: str | None
    json_schema: dict[str, Any] | None
    args_json_schema: dict[str, Any] | None
    tags: list[str]
    return_char_limit: int
    source_code: str | None
    pip_requirements: list[Any] | None
    npm_requirements: list[Any] | None
    default_requires_approval: bool | None
    enable_parallel_execution: bool | None
    metadata: dict[str, Any] | None
    created_by_id: str | None
    last_updated_by_id: str | None
    created_at: datetime | None
    updated_at: datetime | None


class ToolListQuery(PageQuery):
    name: str | None = None




class ApprovalUpdate(RequestBody):
    """`PATCH /v1/agents/{id}/tools/approval/{tool_name}`: the body, or Letta's deprecated query parameter."""

    requires_approval: bool | None = None
    body_requires_approval: bool | None = Field(None, description="the same: the name Letta's Node SDK (1.x) "
                                                "sends it under")
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False,
                                                 "examples": [{"requires_approval": True}]})


class ApprovalQuery(QueryParams):
    requires_approval: Literal["true", "false", "True", "False", "TRUE", "FALSE"] | None = None
