"""Blocks on the wire: Letta's CreateBlock and BlockUpdate bodies, and its Block (BlockResponse)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from proxy.api.operations import QueryParams, RequestBody
from proxy.api.wire.common import Description, Metadata, Name, Text
from proxy.limits import MAX_BLOCK_LIMIT

BlockLimit = Annotated[int, Field(ge=1, le=MAX_BLOCK_LIMIT)]


class BlockUpdate(RequestBody):
    """Every field optional; null `limit` restores the default, null `description` clears it."""

    label: Name | None = None
    value: Text | None = None
    limit: BlockLimit | None = None
    description: Description | None = None
    read_only: bool | None = None
    metadata: Metadata | None = None


class BlockCreate(BlockUpdate):
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False,
                                                 "examples": [{"label": "project", "value": "Due Friday."}]})

    label: Name


class Block(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    label: str
    value: str
    limit: int
    description: str | None
    read_only: bool
    metadata: dict[str, Any]
    hidden: bool | None
    is_template: bool
    template_name: str | None
    template_id: str | None
    base_template_id: str | None
    deployment_id: str | None
    entity_id: str | None
    project_id: str | None
    preserve_on_migration: bool | None
    created_by_id: str | None
    last_updated_by_id: str | None
    created_at: datetime | None
    updated_at: datetime | None


class BlockListQuery(QueryParams):
    label: str | None = None
    before: str | None = None
    after: str | None = None
    limit: Annotated[int, Field(ge=1, le=10000)] | None = None
