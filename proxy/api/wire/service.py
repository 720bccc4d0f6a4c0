"""The server itself on the wire: health, the two model lists (OpenAI's and Letta's), the context window."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from proxy.api.operations import RequestBody


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    status: str
    backend: str
    search: Literal["hybrid", "full-text"]
    index_repaired_at_start: Any
    search_note: str | None = None


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] | None = None
    created: int | None = None
    owned_by: str | None = None


class OpenAIModelList(BaseModel):
    """OpenAI's shape: every agent as a model id (`owned_by: memproxy`), then the upstream's models."""

    object: Literal["list"]
    data: list[OpenAIModel]


class LettaModel(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    name: str
    display_name: str
    handle: str
    model_endpoint_type: str
    model_endpoint: str | None
    model_type: str
    provider_type: str
    provider_name: str
    provider_category: str
    context_window: int
    max_context_window: int
    model_wrapper: str | None
    put_inner_thoughts_in_kwargs: bool
    enable_reasoner: bool
    temperature: float | None
    max_tokens: int | None
    parallel_tool_calls: bool


class ContextWindow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    context_window_size_max: int
    context_window_size_current: int
    num_messages: int
    num_archival_memory: int
    num_recall_memory: int
    num_tokens_external_memory_summary: int
    external_memory_summary: str
    num_tokens_system: int
    system_prompt: str
    num_tokens_core_memory: int
    core_memory: str
    num_tokens_summary_memory: int
    summary_memory: str | None
    num_tokens_functions_definitions: int
    functions_definitions: list[dict[str, Any]] | None
    num_tokens_messages: int
    messages: list[dict[str, Any]]


class SummarizeRequest(RequestBody):
    """No field is honoured: `compaction_settings` is refused unless null."""


class Compaction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_messages_before: int
    num_messages_after: int
    summary: str


class PreviewRequest(RequestBody):
    """A chat-completions body (`messages` ending with a user message); the chat parser checks the rest."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": True})

    messages: list[dict[str, Any]]

    def refuse_unsupported(self, where: str = "") -> None:
        return None  # the chat-completions parser owns these fields and their rules
