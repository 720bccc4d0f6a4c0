"""The Letta-compatible management API: agents, blocks, tools, messages, runs, health, models.

One `Operation` per endpoint (see proxy/api/operations.py for how to add one): the router and the OpenAPI
document (`GET /openapi.json`) are both built from this table.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.api import (agent_files, agents, archival, blocks, context, core_memory, mcp_servers, messages, run_stream,
                       runs,
                       tool_rules, tools)
from proxy.api.health import health
from proxy.api.models import letta_models, list_models
from proxy.api.operations import Operation, routes_of
from proxy.api.wire.agents import AgentCreate, AgentImport, AgentListQuery, AgentState, AgentUpdate
from proxy.api.wire.archival import (MessageHit, MessageSearch, Passage, PassageCreate, PassageListQuery,
                                     PassageSearchQuery, PassageSearchResponse)
from proxy.api.wire.blocks import Block, BlockCreate, BlockListQuery, BlockUpdate
from proxy.api.wire.common import Deleted, PageQuery
from proxy.api.wire.mcp_servers import McpServer, McpServerCreate, McpServerUpdate
from proxy.api.wire.messages import LettaMessage, MessageListQuery, Run, RunListQuery, RunStreamRequest
from proxy.api.wire.service import (Compaction, ContextWindow, Health, LettaModel, OpenAIModelList, PreviewRequest,
                                    SummarizeRequest)
from proxy.api.wire.tools import ApprovalQuery, ApprovalUpdate, Tool, ToolCreate, ToolListQuery, ToolUpdate

Endpoint = Callable[[Request], Awaitable[Response]]


def both(path: str, endpoint: Endpoint, method: str) -> list[Route]:
    """An untyped route, with and without the trailing slash (not in /openapi.json: convert it to an Operation)."""
    bare = path.rstrip("/")
    return [Route(bare, endpoint, methods=[method]), Route(bare + "/", endpoint, methods=[method])]


_AGENT = "/v1/agents/{agent_id}"
_CORE = _AGENT + "/core-memory/blocks"
_A, _B, _T, _M, _R, _S = ("agents",), ("blocks",), ("tools",), ("messages",), ("runs",), ("server",)
_MCP, _MC = "/v1/mcp-servers", ("mcp",)

operations: list[Operation] = [
    Operation("GET", "/v1/health/", health, "Liveness, version and search mode", _S, response=Health, open=True,
              errors=()),
    Operation("GET", "/v1/models", list_models, "Models in OpenAI's shape (agents, then the upstream's)", _S,
              response=OpenAIModelList, exact=True, errors=()),
    Operation("GET", "/v1/models/", letta_models, "Models in Letta's shape (what an agent can be created with)",
              _S, response=list[LettaModel], exact=True, errors=()),
    Operation("POST", "/v1/agents/", agents.create_agent, "Create an agent", _A, body=AgentCreate,
              body_required=False, response=AgentState),
    Operation("GET", "/v1/agents/", agents.list_agents, "List agents", _A, query=AgentListQuery,
              response=list[AgentState]),
    Operation("GET", _AGENT, agents.get_agent, "Retrieve an agent", _A, response=AgentState),
    Operation("PATCH", _AGENT, agents.modify_agent, "Modify an agent", _A, body=AgentUpdate, response=AgentState),
    Operation("DELETE", _AGENT, agents.delete_agent, "Delete an agent", _A, response=Deleted),
    Operation("GET", _AGENT + "/tools", tools.list_agent_tools, "List an agent's tools", _T, query=PageQuery,
              response=list[Tool]),
    Operation("PATCH", _AGENT + "/tools/attach/{tool_id}", tools.attach_tool, "Attach a tool", _T,
              response=AgentState),
    Operation("PATCH", _AGENT + "/tools/detach/{tool_id}", tools.detach_tool, "Detach a tool", _T,
              response=AgentState),
    Operation("POST", "/v1/tools/", tools.create_tool, "Create a custom Python tool", _T, body=ToolCreate,
              response=Tool, errors=(400, 409, 422)),
    Operation("PUT", "/v1/tools/", tools.upsert_tool, "Create a custom Python tool, or change the one of its name",
              _T, body=ToolCreate, response=Tool),
    Operation("GET", "/v1/tools/", tools.list_tools, "List tools", _T, query=ToolListQuery, response=list[Tool]),
    Operation("GET", "/v1/tools/{tool_id}", tools.get_tool, "Retrieve a tool", _T, response=Tool),
    Operation("PATCH", "/v1/tools/{tool_id}", tools.modify_tool, "Modify a custom tool", _T, body=ToolUpdate,
              response=Tool),
    Operation("DELETE", "/v1/tools/{tool_id}", tools.delete_tool, "Delete a custom tool", _T, response=Deleted),
    Operation("GET", _CORE, core_memory.list_agent_blocks, "List an agent's blocks", _B, query=PageQuery,
              response=list[Block]),
    Operation("PATCH", _CORE + "/attach/{block_id}", core_memory.attach_block, "Attach a block", _B,
              response=AgentState, errors=(400, 404, 409, 422)),
    Operation("PATCH", _CORE + "/detach/{block_id}", core_memory.detach_block, "Detach a block", _B,
              response=AgentState),
    Operation("GET", _CORE + "/{block_label}", core_memory.get_agent_block, "Retrieve an agent's block by label",
              _B, response=Block),
    Operation("PATCH", _CORE + "/{block_label}", core_memory.modify_agent_block, "Modify an agent's block", _B,
              body=BlockUpdate, response=Block, errors=(400, 404, 409, 422)),
    Operation("GET", _AGENT + "/messages", messages.list_messages, "List an agent's messages", _M,
              query=MessageListQuery, response=list[LettaMessage]),
    Operation("PATCH", _AGENT + "/reset-messages", messages.reset_messages, "Clear the in-context messages", _M,
              response=AgentState),
    Operation("GET", _AGENT + "/context", context.context_window, "What the context window holds", _A,
              response=ContextWindow),
    Operation("GET", _AGENT + "/archival-memory", archival.list_passages, "List archival passages", _A,
              query=PassageListQuery, response=list[Passage], errors=(404, 422, 503)),
    Operation("POST", _AGENT + "/archival-memory", archival.create_passage, "Insert an archival passage", _A,
              body=PassageCreate, response=list[Passage], errors=(400, 404, 422, 503)),
    Operation("GET", _AGENT + "/archival-memory/search", archival.search_passages, "Search archival memory", _A,
              query=PassageSearchQuery, response=PassageSearchResponse, errors=(404, 422, 503)),
    Operation("DELETE", _AGENT + "/archival-memory/{passage_id}", archival.delete_passage,
              "Delete an archival passage", _A, response=Deleted, errors=(404, 503)),
    Operation("POST", "/v1/agents/messages/search", archival.search_messages, "Search one agent's history", _M,
              body=MessageSearch, response=list[MessageHit], errors=(400, 404, 422, 503)),
    Operation("POST", _AGENT + "/summarize", context.summarize, "Compact the context now", _A,
              body=SummarizeRequest, body_required=False, response=Compaction),
    Operation("POST", _AGENT + "/messages/preview-raw-payload", context.preview_raw_payload,
              "The JSON the next turn would send upstream", _M, body=PreviewRequest, response=dict),
    Operation("POST", "/v1/blocks/", blocks.create_block, "Create a block", _B, body=BlockCreate, response=Block),
    Operation("GET", "/v1/blocks/", blocks.list_blocks, "List blocks", _B, query=BlockListQuery,
              response=list[Block]),
    Operation("GET", "/v1/blocks/{block_id}", blocks.get_block, "Retrieve a block", _B, response=Block),
    Operation("PATCH", "/v1/blocks/{block_id}", blocks.modify_block, "Modify a block", _B, body=BlockUpdate,
              response=Block, errors=(400, 404, 409, 422)),
    Operation("DELETE", "/v1/blocks/{block_id}", blocks.delete_block, "Delete a block", _B, response=Deleted),
    Operation("GET", "/v1/blocks/{block_id}/agents", blocks.list_agents_for_block, "Agents holding a block", _B,
              query=PageQuery, response=list[AgentState]),
    Operation("GET", "/v1/runs/", runs.list_runs, "List runs, newest first", _R, query=RunListQuery,
              response=list[Run]),
    Operation("GET", "/v1/runs/{run_id}", runs.get_run, "Retrieve a run", _R, response=Run),
    Operation("PATCH", _AGENT + "/tools/approval/{tool_name}", tool_rules.modify_approval,
              "Require (or stop requiring) approval before a tool runs", _T, body=ApprovalUpdate,
              body_required=False, query=ApprovalQuery, response=AgentState),
    # MCP servers: a remote server is reached when its tools are asked for (502 when it cannot be).
    Operation("POST", _MCP, mcp_servers.create_mcp_server, "Register an MCP server", _MC, body=McpServerCreate,
              response=McpServer, errors=(400, 409, 422)),
    Operation("GET", _MCP, mcp_servers.list_mcp_servers, "List MCP servers", _MC, response=list[McpServer],
              errors=()),
    Operation("GET", _MCP + "/{mcp_server_id}", mcp_servers.get_mcp_server, "Retrieve an MCP server", _MC,
              response=McpServer, errors=(404,)),
    Operation("PATCH", _MCP + "/{mcp_server_id}", mcp_servers.update_mcp_server, "Change an MCP server", _MC,
              body=McpServerUpdate, response=McpServer, errors=(400, 404, 409, 422)),
    Operation("DELETE", _MCP + "/{mcp_server_id}", mcp_servers.delete_mcp_server,
              "Delete an MCP server (its tools are detached from every agent; 204, no body)", _MC, status=204,
              errors=(404,)),
    Operation("GET", _MCP + "/{mcp_server_id}/tools", mcp_servers.list_mcp_server_tools,
              "List the tools an MCP server offers now", _MC, response=list[Tool], errors=(404, 502)),
    Operation("GET", _MCP + "/{mcp_server_id}/tools/{tool_id}", mcp_servers.get_mcp_server_tool,
              "Retrieve one tool of an MCP server", _MC, response=Tool, errors=(404, 502)),
    Operation("POST", _MCP + "/{mcp_server_id}/tools/{tool_name}", mcp_servers.register_mcp_tool,
              "Register an MCP server's tool as a memproxy tool", _MC, response=Tool, errors=(400, 404, 409, 502)),
    # Letta agent files (.af): the export is the file itself; the import is multipart (documented by hand).
    Operation("GET", _AGENT + "/export", agent_files.export_agent, "Export an agent as a Letta agent file", _A,
              response=dict, errors=(400, 404), extra={"parameters": agent_files.EXPORT_QUERY}),
    Operation("POST", "/v1/agents/import", agent_files.import_agent, "Import a Letta agent file", _A,
              response=AgentImport, errors=(400, 409, 413, 422),
              extra={"requestBody": agent_files.IMPORT_BODY}),
    # Resumable runs (MEMPROXY_REDIS_URL): the events after `starting_after`, then the live run, as SSE.
    Operation("POST", "/v1/runs/{run_id}/stream", run_stream.stream_run, "Resume a run's stream (Letta's body)", _R,
              body=RunStreamRequest, body_required=False, stream=True, invalid_status=400,
              errors=(400, 404, 410, 503)),
    Operation("GET", "/v1/runs/{run_id}/stream", run_stream.stream_run,
              "Resume a run's stream (`?starting_after=N` or `Last-Event-ID`)", _R, stream=True,
              errors=(400, 404, 410, 503),
              extra={"parameters": [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                                    {"name": "starting_after", "in": "query", "required": False,
                                     "schema": {"type": "integer", "minimum": 0}},
                                    {"name": "batch_size", "in": "query", "required": False,
                                     "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}]}),
]

# Not yet typed (hand-validated, missing from /openapi.json): convert them as proxy/api/operations.py says.
untyped: list[Route] = [
]

routes: list[Route] = [*routes_of(operations), *untyped]
