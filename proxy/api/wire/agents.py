"""Agents on the wire: Letta's CreateAgentRequest and UpdateAgent bodies (the subset memproxy honours), and
its AgentState."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from proxy.api.operations import RequestBody
from proxy.api.wire.blocks import Block, BlockCreate
from proxy.api.wire.common import Description, Metadata, Name, NameList, Number, PageQuery, Text
from proxy.api.wire.tools import Tool
from proxy.limits import MAX_CONTEXT_WINDOW, MAX_LIST_ITEMS, MAX_OUTPUT_TOKENS

ToolEnv = dict[str, Any] | list[dict[str, Any]]


class AgentUpdate(RequestBody):
    """Fields memproxy honours; null leaves a field unchanged. Any other Letta field is refused by name
    (400 `unsupported_parameter`) unless it is null, false or empty."""

    name: Name | None = None
    system: Text | None = None
    model: Name | None = None
    embedding: Name | None = None
    description: Description | None = None
    tags: NameList | None = None
    metadata: Metadata | None = None
    message_buffer_autoclear: bool | None = None
    context_window_limit: Annotated[int, Field(ge=1, le=MAX_CONTEXT_WINDOW)] | None = None
    llm_config: dict[str, Any] | None = Field(None, description="Letta's deprecated config: model, "
                                              "context_window, temperature, frequency_penalty, max_tokens")
    embedding_config: dict[str, Any] | None = Field(None, description="Letta's deprecated config: "
                                                    "embedding_model")
    max_tokens: Annotated[int, Field(ge=1, le=MAX_OUTPUT_TOKENS)] | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    frequency_penalty: Number | None = None
    presence_penalty: Number | None = None
    tools: NameList | None = None
    tool_ids: NameList | None = None
    block_ids: NameList | None = None
    timezone: Name | None = Field(None, description="IANA name; dates in the memory prompt and in search "
                                  "filters use it")
    secrets: ToolEnv | None = Field(None, description="tool environment variables: {KEY: value} or "
                                    "[{key, value}]")
    tool_exec_environment_variables: ToolEnv | None = Field(None, description="the older name of `secrets`")
    tool_rules: list[Any] | None = Field(None, description="Letta's tool rules (run_first, exit_loop, "
                                         "continue_loop, constrain_child_tools, max_count_per_step, "
                                         "required_before_exit, conditional, parent_last_tool, requires_approval); "
                                         "checked field by field (422 naming it)")


class InitialMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]]


class AgentCreate(AgentUpdate):
    model_config = ConfigDict(json_schema_extra={"additionalProperties": False, "examples": [
        {"name": "helper", "memory_blocks": [{"label": "human", "value": "Name: Ada"}], "timezone": "Europe/Paris"}]})

    # What Letta's SDKs send unasked: accepted at exactly these values, refused at any other.
    ignored: ClassVar[dict[str, Any]] = {"agent_type": "letta_v1_agent", "embedding_chunk_size": 300}

    memory_blocks: list[BlockCreate] | None = Field(None, max_length=MAX_LIST_ITEMS)
    include_base_tools: bool | None = None
    initial_message_sequence: list[InitialMessage] | None = Field(None, max_length=MAX_LIST_ITEMS)


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str
    display_name: str | None
    model_endpoint_type: str
    model_endpoint: str | None
    provider_name: str | None
    provider_category: str | None
    model_wrapper: str | None
    context_window: int
    put_inner_thoughts_in_kwargs: bool | None
    handle: str | None
    temperature: float | None
    max_tokens: int | None
    top_p: float | None
    frequency_penalty: float | None
    presence_penalty: float | None
    enable_reasoner: bool
    reasoning_effort: str | None
    max_reasoning_tokens: int
    compatibility_type: str | None
    verbosity: str | None
    tier: str | None
    parallel_tool_calls: bool | None


class EmbeddingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    embedding_endpoint_type: str
    embedding_endpoint: str | None
    embedding_model: str
    embedding_dim: int
    embedding_chunk_size: int | None
    handle: str | None
    batch_size: int
    azure_endpoint: str | None
    azure_version: str | None
    azure_deployment: str | None


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider_type: str
    temperature: float | None
    max_output_tokens: int | None
    parallel_tool_calls: bool | None
    response_format: dict[str, Any] | None


class Memory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_type: str
    blocks: list[Block]
    file_blocks: list[dict[str, Any]]
    prompt_template: str


class EnvironmentVariable(BaseModel):
    """A tool variable; `value` is masked ("sk-...abcd") and never the secret itself."""

    model_config = ConfigDict(extra="forbid")

    id: str | None
    key: str
    value: str
    description: str | None
    value_enc: str | None
    agent_id: str | None
    created_by_id: str | None
    last_updated_by_id: str | None
    created_at: datetime | None
    updated_at: datetime | None


class AgentState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    system: str
    agent_type: str
    description: str | None
    llm_config: LLMConfig
    embedding_config: EmbeddingConfig
    model: str | None
    model_settings: ModelSettings | None
    embedding: str | None
    compaction_settings: dict[str, Any] | None
    pending_approval: dict[str, Any] | None
    context_window_limit: int | None
    response_format: dict[str, Any] | None
    memory: Memory
    blocks: list[Block]
    tools: list[Tool]
    tool_rules: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    tags: list[str]
    metadata: dict[str, Any] | None
    message_ids: list[str] | None
    message_buffer_autoclear: bool
    enable_sleeptime: bool | None
    identity_ids: list[str]
    identities: list[dict[str, Any]]
    tool_exec_environment_variables: list[EnvironmentVariable]
    secrets: list[EnvironmentVariable]
    multi_agent_group: dict[str, Any] | None
    managed_group: dict[str, Any] | None
    last_run_completion: datetime | None
    last_run_duration_ms: int | None
    last_stop_reason: str | None
    timezone: str | None
    max_files_open: int | None
    per_file_view_window_char_limit: int | None
    hidden: bool | None
    project_id: str | None
    template_id: str | None
    base_template_id: str | None
    deployment_id: str | None
    entity_id: str | None
    created_by_id: str | None
    last_updated_by_id: str | None
    created_at: datetime | None
    updated_at: datetime | None


class AgentListQuery(PageQuery):
    name: str | None = None
    tags: list[str] | None = None
    match_all_tags: bool | None = None


class AgentImport(BaseModel):
    """`POST /v1/agents/import`: the new agents' ids, in the file's order."""

    model_config = ConfigDict(extra="forbid")
    agent_ids: list[str]
