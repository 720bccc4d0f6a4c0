"""Both Letta SDK tours reach every operation memproxy serves: each operation of the route tables is listed
here with the call that reaches it in the Python tours (test_client_letta_python*.py) and in the Node one
(node/letta_sdk.mjs). A new operation fails this test until both tours call it; so does a call taken out."""

from __future__ import annotations

from pathlib import Path

from proxy.api.routes import operations as management_operations
from proxy.letta.routes import operations as letta_operations

HERE = Path(__file__).resolve().parent
_AGENT, _CORE, _MCP = "/v1/agents/{agent_id}", "/v1/agents/{agent_id}/core-memory/blocks", "/v1/mcp-servers"

# (method, path): (the Python SDK call, the Node SDK call). Where the SDKs have no method, the call is the
# SDK's raw helper on that path (`client.get/post(...)`, `letta.get/post(...)`).
CALLS: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/v1/health/"): ("client.health(", "letta.health("),
    ("GET", "/v1/models"): ('client.get("/v1/models"', 'letta.get("/v1/models")'),
    ("GET", "/v1/models/"): ("client.models.list(", "letta.models.list("),
    ("POST", "/v1/agents/"): ("client.agents.create(", "letta.agents.create("),
    ("GET", "/v1/agents/"): ("client.agents.list(", "letta.agents.list("),
    ("GET", _AGENT): ("client.agents.retrieve(", "letta.agents.retrieve("),
    ("PATCH", _AGENT): ("client.agents.update(", "letta.agents.update("),
    ("DELETE", _AGENT): ("client.agents.delete(", "letta.agents.delete("),
    ("GET", _AGENT + "/tools"): ("client.agents.tools.list(", "letta.agents.tools.list("),
    ("PATCH", _AGENT + "/tools/attach/{tool_id}"): ("client.agents.tools.attach(", "letta.agents.tools.attach("),
    ("PATCH", _AGENT + "/tools/detach/{tool_id}"): ("client.agents.tools.detach(", "letta.agents.tools.detach("),
    ("PATCH", _AGENT + "/tools/approval/{tool_name}"): ("client.agents.tools.update_approval(",
                                                        "letta.agents.tools.updateApproval("),
    ("POST", "/v1/tools/"): ("client.tools.create(", "letta.tools.create("),
    ("PUT", "/v1/tools/"): ("client.tools.upsert(", "letta.tools.upsert("),
    ("GET", "/v1/tools/"): ("client.tools.list(", "letta.tools.list("),
    ("GET", "/v1/tools/{tool_id}"): ("client.tools.retrieve(", "letta.tools.retrieve("),
    ("PATCH", "/v1/tools/{tool_id}"): ("client.tools.update(", "letta.tools.update("),
    ("DELETE", "/v1/tools/{tool_id}"): ("client.tools.delete(", "letta.tools.delete("),
    ("GET", _CORE): ("client.agents.blocks.list(", "letta.agents.blocks.list("),
    ("PATCH", _CORE + "/attach/{block_id}"): ("client.agents.blocks.attach(", "letta.agents.blocks.attach("),
    ("PATCH", _CORE + "/detach/{block_id}"): ("client.agents.blocks.detach(", "letta.agents.blocks.detach("),
    ("GET", _CORE + "/{block_label}"): ("client.agents.blocks.retrieve(", "letta.agents.blocks.retrieve("),
    ("PATCH", _CORE + "/{block_label}"): ("client.agents.blocks.update(", "letta.agents.blocks.update("),
    ("GET", _AGENT + "/messages"): ("client.agents.messages.list(", "letta.agents.messages.list("),
    ("PATCH", _AGENT + "/reset-messages"): ("client.agents.messages.reset(", "letta.agents.messages.reset("),
    ("GET", _AGENT + "/context"): ('/context", cast_to=dict)', "/context`)"),
    ("GET", _AGENT + "/archival-memory"): ("client.agents.passages.list(", "letta.agents.passages.list("),
    ("POST", _AGENT + "/archival-memory"): ("client.agents.passages.create(", "letta.agents.passages.create("),
    ("GET", _AGENT + "/archival-memory/search"): ("client.agents.passages.search(",
                                                  "letta.agents.passages.search("),
    ("DELETE", _AGENT + "/archival-memory/{passage_id}"): ("client.agents.passages.delete(",
                                                           "letta.agents.passages.delete("),
    ("POST", "/v1/agents/messages/search"): ('client.post("/v1/agents/messages/search"',
                                             'letta.post("/v1/agents/messages/search"'),
    ("POST", _AGENT + "/summarize"): ("client.agents.messages.compact(", "letta.agents.messages.compact("),
    ("POST", _AGENT + "/messages/preview-raw-payload"): ('/messages/preview-raw-payload", cast_to=dict',
                                                         "/messages/preview-raw-payload`"),
    ("POST", "/v1/blocks/"): ("client.blocks.create(", "letta.blocks.create("),
    ("GET", "/v1/blocks/"): ("client.blocks.list(", "letta.blocks.list("),
    ("GET", "/v1/blocks/{block_id}"): ("client.blocks.retrieve(", "letta.blocks.retrieve("),
    ("PATCH", "/v1/blocks/{block_id}"): ("client.blocks.update(", "letta.blocks.update("),
    ("DELETE", "/v1/blocks/{block_id}"): ("client.blocks.delete(", "letta.blocks.delete("),
    ("GET", "/v1/blocks/{block_id}/agents"): ("client.blocks.agents.list(", "letta.blocks.agents.list("),
    ("GET", "/v1/runs/"): ("client.runs.list(", "letta.runs.list("),
    ("GET", "/v1/runs/{run_id}"): ("client.runs.retrieve(", "letta.runs.retrieve("),
    ("POST", _MCP): ("client.mcp_servers.create(", "letta.mcpServers.create("),
    ("GET", _MCP): ("client.mcp_servers.list(", "letta.mcpServers.list("),
    ("GET", _MCP + "/{mcp_server_id}"): ("client.mcp_servers.retrieve(", "letta.mcpServers.retrieve("),
    ("PATCH", _MCP + "/{mcp_server_id}"): ("client.mcp_servers.update(", "letta.mcpServers.update("),
    ("DELETE", _MCP + "/{mcp_server_id}"): ("client.mcp_servers.delete(", "letta.mcpServers.delete("),
    ("GET", _MCP + "/{mcp_server_id}/tools"): ("client.mcp_servers.tools.list(", "letta.mcpServers.tools.list("),
    ("GET", _MCP + "/{mcp_server_id}/tools/{tool_id}"): ("client.mcp_servers.tools.retrieve(",
                                                         "letta.mcpServers.tools.retrieve("),
    ("POST", _MCP + "/{mcp_server_id}/tools/{tool_name}"): ('/tools/add", cast_to=Tool)', "/tools/add`)"),
    ("GET", _AGENT + "/export"): ("client.agents.export_file(", "letta.agents.exportFile("),
    ("POST", "/v1/agents/import"): ("client.agents.import_file(", "letta.agents.importFile("),
    ("POST", "/v1/runs/{run_id}/stream"): ("client.runs.messages.stream(", "letta.runs.messages.stream("),
    ("GET", "/v1/runs/{run_id}/stream"): ("/stream\", params={\"starting_after\"", "letta.get(`/v1/runs/"),
    ("POST", _AGENT + "/messages"): (".agents.messages.create(", ".agents.messages.create("),
    ("POST", _AGENT + "/messages/stream"): (".agents.messages.stream(", ".agents.messages.stream("),
    ("POST", _AGENT + "/messages/async"): (".agents.messages.create_async(", ".agents.messages.createAsync("),
    ("POST", _AGENT + "/messages/cancel"): ("client.agents.messages.cancel(", "letta.agents.messages.cancel("),
}


def test_both_sdk_tours_call_every_operation() -> None:
    served = {(op.method, op.path) for op in [*management_operations, *letta_operations]}
    assert set(CALLS) == served, (f"not in CALLS: {sorted(served - set(CALLS))}; "
                                  f"no longer served: {sorted(set(CALLS) - served)}")
    python = "".join(path.read_text() for path in sorted(HERE.glob("test_client_letta_python*.py")))
    node = (HERE / "node" / "letta_sdk.mjs").read_text()
    missing = [f"{method} {path}: {sdk} tour never calls {call!r}"
               for (method, path), calls in CALLS.items()
               for sdk, call, source in (("Python", calls[0], python), ("Node", calls[1], node))
               if call not in source]
    assert not missing, "\n".join(missing)
