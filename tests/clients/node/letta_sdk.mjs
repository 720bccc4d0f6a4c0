// Letta's own Node SDK (`@letta-ai/letta-client`) against memproxy's Letta API. The SDK does not check
// responses at run time, so every response is returned as received and the Python test validates it
// against the SDK's published types (the same OpenAPI document both SDKs are generated from).
import Letta, { toFile } from "@letta-ai/letta-client";

import { run } from "./common.mjs";

function client(input, headers = {}) {
  return new Letta({ baseURL: input.baseURL, apiKey: "unused", maxRetries: 0, timeout: 20_000,
                     defaultHeaders: { ...(input.headers ?? {}), ...headers } });
}

async function all(pagePromise) {
  const out = [];
  for await (const item of pagePromise) out.push(item);  // the SDK's auto-pagination, page after page
  return out;
}

async function tour(input) {
  const letta = client(input);
  const blocks = [{ label: "human", value: "Name: Ada", limit: 200 }, { label: "persona", value: "I am helpful." },
                  { label: "policy", value: "Be kind.", read_only: true }];
  const agents = [];
  for (let i = 0; i < 3; i++) {
    agents.push(await letta.agents.create({ name: `node-${i}`, system: "You are a test agent.", model: "sim-small",
                                            memory_blocks: blocks, timezone: "Europe/Paris" }));
  }
  const [first] = agents;
  const out = { agents, ids: agents.map((a) => a.id) };
  out.retrieved = await letta.agents.retrieve(first.id);
  out.updated = await letta.agents.update(first.id, { name: "renamed" });
  out.agentPages = await all(letta.agents.list({ limit: 2 }));
  out.agentBlocks = await all(letta.agents.blocks.list(first.id, { limit: 1 }));
  out.block = await letta.agents.blocks.retrieve("human", { agent_id: first.id });
  out.blockUpdated = await letta.agents.blocks.update("human", { agent_id: first.id, value: "Name: Ada L." });
  const shared = await letta.blocks.create({ label: "team", value: "We ship on Fridays." });
  out.shared = shared;
  for (const agent of agents) out.attached = await letta.agents.blocks.attach(shared.id, { agent_id: agent.id });
  out.sharers = await all(letta.blocks.agents.list(shared.id, { limit: 1 }));
  out.detached = await letta.agents.blocks.detach(shared.id, { agent_id: agents[2].id });
  out.blockList = await all(letta.blocks.list({ limit: 1 }));
  out.models = await letta.models.list();
  out.passages = await letta.agents.passages.create(first.id, { text: "The keeper's cat is called Biscuit." });
  out.passageList = await letta.agents.passages.list(first.id);
  out.search = await letta.agents.passages.search(first.id, { query: "keeper cat" });

  const talk = client(input, input.toolHeaders);
  out.response = await talk.agents.messages.create(first.id, { messages: [{ role: "user", content: "I like tea." }] });
  out.stream = [];
  const stream = await client(input, input.streamHeaders).agents.messages.stream(first.id, { messages: [{ role: "user", content: "again" }],
                                                               stream_tokens: true });
  for await (const event of stream) out.stream.push(event);
  out.history = await all(letta.agents.messages.list(first.id, { order: "asc", limit: 3 }));
  out.run = await client(input, input.replyHeaders).agents.messages.createAsync(
    first.id, { messages: [{ role: "user", content: "background" }] });
  for (let i = 0; i < 300; i++) {
    out.runDone = await letta.runs.retrieve(out.run.id);
    if (out.runDone.status !== "running") break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  out.runs = await all(letta.runs.list({ agent_id: first.id, limit: 2 }));
  out.cancel = await letta.agents.messages.cancel(first.id);
  await letta.blocks.delete(shared.id);
  for (const agent of agents) await letta.agents.delete(agent.id);
  return out;
}

const BLOCKS = [{ label: "human", value: "Name: Ada" }, { label: "persona", value: "I am helpful." }];

// Custom tools, a turn calling one, MCP servers and their tools, agent files, and the rest of the agent's API.
async function resources(input) {
  const letta = client(input);
  const out = {};
  const agent = await letta.agents.create({ name: "node-more", system: "You are a test agent.", model: "sim-small",
                                            memory_blocks: BLOCKS });
  out.health = await letta.health();
  out.tool = await letta.tools.create({ source_code: input.rollSource, tags: ["dice"] });
  out.toolRetrieved = await letta.tools.retrieve(out.tool.id);
  out.toolUpdated = await letta.tools.update(out.tool.id, { description: "Roll one die." });
  out.toolUpserted = await letta.tools.upsert({ source_code: input.rollSource, tags: ["dice", "games"] });
  out.toolPages = await all(letta.tools.list({ limit: 1 }));
  out.toolAttached = await letta.agents.tools.attach(out.tool.id, { agent_id: agent.id });
  out.toolTurn = await client(input, input.rollHeaders).agents.messages.create(
    agent.id, { messages: [{ role: "user", content: "Roll a d6." }] });
  out.toolDetached = await letta.agents.tools.detach(out.tool.id, { agent_id: agent.id });
  out.agentTools = await all(letta.agents.tools.list(agent.id, { limit: 1 }));
  out.approval = await letta.agents.tools.updateApproval("memory_insert", { agent_id: agent.id,
                                                                            body_requires_approval: true });
  const passage = (await letta.agents.passages.create(agent.id, { text: "A passage to delete." }))[0];
  out.passageDeleted = await letta.agents.passages.delete(passage.id, { agent_id: agent.id });

  out.mcp = await letta.mcpServers.create({ server_name: "node-mcp", config: {
    mcp_server_type: "streamable_http", server_url: input.mcpURL } });
  out.mcpRetrieved = await letta.mcpServers.retrieve(out.mcp.id);
  out.mcpUpdated = await letta.mcpServers.update(out.mcp.id, { server_name: "node-mcp-renamed", config: {
    mcp_server_type: "streamable_http", server_url: input.mcpURL } });
  out.mcpList = await letta.mcpServers.list();
  out.mcpTools = await letta.mcpServers.tools.list(out.mcp.id);
  const add = out.mcpTools.find((t) => t.name === "add");
  out.mcpTool = await letta.mcpServers.tools.retrieve(add.id, { mcp_server_id: out.mcp.id });
  // No SDK method registers an MCP server's tool as a tool (Letta's add_mcp_tool): the SDK's raw helper does.
  out.mcpRegistered = await letta.post(`/v1/mcp-servers/${out.mcp.id}/tools/add`);
  out.mcpAttached = await letta.agents.tools.attach(out.mcpRegistered.id, { agent_id: agent.id });
  out.mcpTurn = await client(input, input.addHeaders).agents.messages.create(
    agent.id, { messages: [{ role: "user", content: "2 + 3?" }] });
  out.mcpDeleted = (await letta.mcpServers.delete(out.mcp.id)) ?? null;
  out.afterMcp = await letta.agents.retrieve(agent.id);

  // Typed as a string, but the SDK parses any application/json answer (Letta's export is one) into an object.
  out.exported = await letta.agents.exportFile(agent.id);
  const exported = typeof out.exported === "string" ? out.exported : JSON.stringify(out.exported);
  out.imported = await letta.agents.importFile({ file: await toFile(Buffer.from(exported), "agent.af",
                                                                    { type: "application/json" }),
                                                 override_name: "node-more-copy" });
  out.copy = await letta.agents.retrieve(out.imported.agent_ids[0]);

  // No SDK method for these memproxy routes: the SDK's raw helper calls them.
  out.context = await letta.get(`/v1/agents/${agent.id}/context`);
  out.preview = await letta.post(`/v1/agents/${agent.id}/messages/preview-raw-payload`,
                                 { body: { messages: [{ role: "user", content: "next" }] } });
  out.searched = await letta.post("/v1/agents/messages/search",
                                  { body: { agent_id: agent.id, query: "Roll", search_mode: "fts" } });
  out.openaiModels = await letta.get("/v1/models");
  out.compacted = await letta.agents.messages.compact(agent.id);
  out.reset = await letta.agents.messages.reset(agent.id, {});
  const scratch = await letta.blocks.create({ label: "scratch", value: "temporary" });
  out.blockRetrieved = await letta.blocks.retrieve(scratch.id);
  out.blockUpdated = await letta.blocks.update(scratch.id, { value: "changed" });
  out.blockDeleted = await letta.blocks.delete(scratch.id);
  out.toolDeleted = await letta.tools.delete(out.tool.id);
  out.agentDeleted = await letta.agents.delete(out.copy.id);
  await letta.agents.delete(agent.id);
  return out;
}

// A background run on a server with Redis-backed resumable runs, followed by runs.messages.stream.
async function runs(input) {
  const letta = client(input);
  const agent = await letta.agents.create({ name: "node-runs", system: "You are a test agent.", model: "sim-small",
                                            memory_blocks: BLOCKS });
  const out = {};
  out.run = await client(input, input.replyHeaders).agents.messages.createAsync(
    agent.id, { messages: [{ role: "user", content: "work" }] });
  out.followed = [];
  for await (const event of await letta.runs.messages.stream(out.run.id, { starting_after: 0 })) out.followed.push(event);
  out.resumed = [];
  for await (const event of await letta.runs.messages.stream(out.run.id, { starting_after: 2 })) out.resumed.push(event);
  // GET /v1/runs/{id}/stream (resume by `starting_after`): the SDK only POSTs; its raw helper GETs, as SSE.
  out.resumedByGet = [];
  const got = await letta.get(`/v1/runs/${out.run.id}/stream`, { query: { starting_after: 2 }, stream: true });
  for await (const event of got) out.resumedByGet.push(event);
  out.runDone = await letta.runs.retrieve(out.run.id);
  out.runs = await all(letta.runs.list({ agent_id: agent.id, limit: 1 }));
  await letta.agents.delete(agent.id);
  return out;
}

await run({ tour, resources, runs });
