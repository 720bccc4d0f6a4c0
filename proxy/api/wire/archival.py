"""Archival memory and recall search on the wire: passages, passage search, message search."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from proxy.api.operations import QueryParams, RequestBody
from proxy.api.wire.agents import EmbeddingConfig
from proxy.api.wire.common import Name, NameList, PageQuery, Text
from proxy.limits import MAX_INT


class PassageCreate(RequestBody):
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False,
                                                 "examples": [{"text": "Ada prefers tea.", "tags": ["drinks"]}]})

    text: Text
    tags: NameList | None = None


class Passage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    text: str
    tags: list[str] | None
    metadata: dict[str, Any] | None
    agent_id: str | None
    archive_id: str | None
    source_id: str | None
    file_id: str | None
    file_name: str | None
    created_at: datetime | None
    updated_at: datetime | None
    is_deleted: bool
    created_by_id: str | None
    last_updated_by_id: str | None
    embedding: list[float] | None
    embedding_config: EmbeddingConfig | None


class PassageListQuery(PageQuery):
    search: str | None = None


class PassageSearchQuery(QueryParams):
    query: str
    tags: list[str] | None = None
    tag_match_mode: Literal["any", "all"] | None = None
    top_k: Annotated[int, Field(ge=1, le=100)] | None = None
    start_datetime: str | None = None
    end_datetime: str | None = None


class PassageHit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    timestamp: str
    content: str
    tags: list[str]
    relevance: Any = None


class PassageSearchResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    results: list[PassageHit]
    count: int


class MessageSearch(RequestBody):
    agent_id: Name | None = Field(None, description="required: a search never spans agents")
    query: Text | None = None
    search_mode: Literal["hybrid", "vector", "fts"] | None = None
    roles: list[Literal["user", "assistant", "tool"]] | None = Field(None, max_length=3)
    limit: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    start_date: Name | None = None
    end_date: Name | None = None


class SearchedMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    agent_id: str
    role: str
    content: list[dict[str, Any]]
    created_at: datetime | None
    run_id: str | None
    name: str | None
    tool_call_id: str | None


class MessageHit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedded_text: str
    message: SearchedMessage
    rrf_score: float
    vector_rank: int | None
    fts_rank: int | None
    search_mode: str
