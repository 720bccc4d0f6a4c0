"""The Letta-compatible management API: agents, blocks, tools, messages, runs, health, models."""

from __future__ import annotations

from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.api import agent_files, agents, archival, blocks, context, core_memory, mcp_servers, messages, runs, tools
from proxy.api.health import health
from proxy.api.models import list_models

Endpoint = Callable[[Request], Awaitable[Response]]


def both(path: str, endpoint: Endpoint, method: str) -> list[Route]:
    """The path with and without a trailing slash: a redirect would drop POST bodies in many clients."""
    bare = path.rstrip("/")
    return [Route(bare, endpoint, methods=[method]), Route(bare + "/", endpoint, methods=[method])]


_AGENT = "/v1/agents/{agent_id}"
_CORE = _AGENT + "/core-memory/blocks"

routes: list[Route] = [
    *both("/v1/health", health, "GET"),
    *both("/v1/models", list_models, "GET"),
    *both("/v1/agents", agents.create_agent, "POST"),
    *both("/v1/agents", agents.list_agents, "GET"),
    *both(_AGENT, agents.get_agent, "GET"),
    *both(_AGENT, agents.modify_agent, "PATCH"),
    *both(_AGENT, agents.delete_agent, "DELETE"),
    *both(_AGENT + "/tools", tools.list_agent_tools, "GET"),
    *both(_AGENT + "/tools/attach/{tool_id}", tools.attach_tool, "PATCH"),
    *both(_AGENT + "/tools/detach/{tool_id}", tools.detach_tool, "PATCH"),
    *both("/v1/tools", tools.create_tool, "POST"),
    *both("/v1/tools", tools.list_tools, "GET"),
    *both("/v1/tools/{tool_id}", tools.get_tool, "GET"),
    *both("/v1/tools/{tool_id}", tools.modify_tool, "PATCH"),
    *both("/v1/tools/{tool_id}", tools.delete_tool, "DELETE"),
    *both(_CORE, core_memory.list_agent_blocks, "GET"),
    *both(_CORE + "/attach/{block_id}", core_memory.attach_block, "PATCH"),
    *both(_CORE + "/detach/{block_id}", core_memory.detach_block, "PATCH"),
    *both(_CORE + "/{block_label}", core_memory.get_agent_block, "GET"),
    *both(_CORE + "/{block_label}", core_memory.modify_agent_block, "PATCH"),
    *both(_AGENT + "/messages", messages.list_messages, "GET"),
    *both(_AGENT + "/reset-messages", messages.reset_messages, "PATCH"),
    *both(_AGENT + "/context", context.context_window, "GET"),
    *both(_AGENT + "/archival-memory", archival.list_passages, "GET"),
    *both(_AGENT + "/archival-memory", archival.create_passage, "POST"),
    *both(_AGENT + "/archival-memory/search", archival.search_passages, "GET"),
    *both(_AGENT + "/archival-memory/{passage_id}", archival.delete_passage, "DELETE"),
    *both("/v1/agents/messages/search", archival.search_messages, "POST"),
    *both(_AGENT + "/summarize", context.summarize, "POST"),
    *both(_AGENT + "/messages/preview-raw-payload", context.preview_raw_payload, "POST"),
    *both("/v1/blocks", blocks.create_block, "POST"),
    *both("/v1/blocks", blocks.list_blocks, "GET"),
    *both("/v1/blocks/{block_id}", blocks.get_block, "GET"),
    *both("/v1/blocks/{block_id}", blocks.modify_block, "PATCH"),
    *both("/v1/blocks/{block_id}", blocks.delete_block, "DELETE"),
    *both("/v1/blocks/{block_id}/agents", blocks.list_agents_for_block, "GET"),
    *both("/v1/mcp-servers", mcp_servers.create_mcp_server, "POST"),
    *both("/v1/mcp-servers", mcp_servers.list_mcp_servers, "GET"),
    *both("/v1/mcp-servers/{mcp_server_id}", mcp_servers.get_mcp_server, "GET"),
    *both("/v1/mcp-servers/{mcp_server_id}", mcp_servers.delete_mcp_server, "DELETE"),
    *both("/v1/mcp-servers/{mcp_server_id}/tools", mcp_servers.list_mcp_server_tools, "GET"),
    *both("/v1/mcp-servers/{mcp_server_id}/tools/{tool_id}", mcp_servers.get_mcp_server_tool, "GET"),
    *both("/v1/mcp-servers/{mcp_server_id}/tools/{tool_name}", mcp_servers.register_mcp_tool, "POST"),
    *both("/v1/runs", runs.list_runs, "GET"),
    *both("/v1/runs/{run_id}", runs.get_run, "GET"),
    *agent_files.routes,
]
