// Letta's own Node SDK (`@letta-ai/letta-client`) against memproxy's Letta API. The SDK does not check
// responses at run time, so every response is returned as received and the Python test validates it
// against the SDK's published types (the same OpenAPI document both SDKs are generated from).
import Letta from "@letta-ai/letta-client";

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

await run({ tour });
