// The console shell: key prompt, agent list and creation, and the tabs of one agent (hash routes).

import { ApiError, call, key } from "./api.js";
import { clear, errorText, h } from "./dom.js";
import { chatPanel, historyPanel } from "./chat.js";
import { contextPanel, runsPanel, searchPanel } from "./insight.js";
import { memoryPanel } from "./memory.js";

const TABS = [
  ["memory", "Memory", memoryPanel],
  ["chat", "Chat", chatPanel],
  ["history", "History", historyPanel],
  ["runs", "Runs", runsPanel],
  ["context", "Context", contextPanel],
  ["search", "Search", searchPanel],
];

const $ = (id) => document.getElementById(id);
let waitingForKey = null;

function status(text) {
  $("status").textContent = text;
}

// A 401 anywhere opens the key dialog; `withKey` retries the refused call once a key is entered.
function askForKey(err) {
  const dialog = $("key-dialog");
  const form = $("key-form");
  form.querySelector("[data-role=error]").textContent = key.get() ? errorText(err) : "";
  // Escape would close the dialog and leave the waiting call hanging: a key is required here.
  dialog.oncancel = (event) => event.preventDefault();
  if (!dialog.open) dialog.showModal();
  if (!waitingForKey) {
    waitingForKey = new Promise((resolve) => {
      form.onsubmit = (event) => {
        event.preventDefault();
        key.set(form.elements.key.value.trim());
        form.reset();
        dialog.close();
        waitingForKey = null;
        resolve();
      };
    });
  }
  return waitingForKey;
}

async function withKey(action) {
  for (;;) {
    try {
      return await action();
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
      await askForKey(err);
    }
  }
}

async function loadAgents() {
  const list = $("agent-list");
  try {
    const agents = await withKey(() => call("GET", "/v1/agents/?limit=200&order=desc"));
    $("forget-key").hidden = !key.get();
    const current = route().agentId;
    clear(list, agents.map((a) => h("li", {},
      h("a", { href: `#/agents/${a.id}/memory`, class: a.id === current ? "active" : null, title: a.id },
        h("strong", {}, a.name), h("small", {}, a.id)))));
    if (!agents.length) list.append(h("li", { class: "muted" }, "No agents yet."));
    status(`${agents.length} agent${agents.length === 1 ? "" : "s"}`);
  } catch (err) {
    clear(list, h("li", { class: "error" }, errorText(err)));
  }
}

async function createAgent(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = form.querySelector("[data-role=error]");
  error.textContent = "";
  const f = form.elements;
  const body = {
    memory_blocks: [
      { label: "persona", value: f.persona.value, limit: 5000 },
      { label: "human", value: f.human.value, limit: 5000 },
    ],
  };
  if (f.name.value.trim()) body.name = f.name.value.trim();
  try {
    const agent = await withKey(() => call("POST", "/v1/agents/", body));
    form.elements.name.value = "";
    location.hash = `#/agents/${agent.id}/memory`;
    await loadAgents();
  } catch (err) {
    error.textContent = errorText(err);
  }
}

function route() {
  const match = location.hash.match(/^#\/agents\/([^/]+)(?:\/([a-z]+))?/);
  if (!match) return { agentId: null, tab: null };
  return { agentId: decodeURIComponent(match[1]), tab: match[2] || "memory" };
}

let shown = null;

async function render() {
  const { agentId, tab } = route();
  const main = $("main");
  document.querySelectorAll("#agent-list a").forEach((a) => {
    a.classList.toggle("active", a.getAttribute("href").startsWith(`#/agents/${agentId}/`));
  });
  if (!agentId) {
    clear(main, h("p", { class: "muted" }, "Choose an agent, or create one."));
    return;
  }
  const [, , panel] = TABS.find(([name]) => name === tab) || TABS[0];
  const ticket = (shown = {});
  const body = h("section", { class: "panel", id: `panel-${tab}` }, h("p", { class: "muted" }, "Loading…"));
  clear(main,
    h("div", { class: "agent-head" }, h("h1", { id: "agent-title" }, agentId)),
    h("nav", { class: "tabs" }, TABS.map(([name, label]) =>
      h("a", { href: `#/agents/${agentId}/${name}`, class: name === tab ? "active" : null }, label))),
    body);
  try {
    const agent = await withKey(() => call("GET", `/v1/agents/${encodeURIComponent(agentId)}`));
    if (ticket !== shown) return;
    $("agent-title").textContent = agent.name;
    $("agent-title").append(h("small", {}, agent.id));
    await panel(body, agent, { withKey });
  } catch (err) {
    if (ticket === shown) clear(body, h("p", { class: "error" }, errorText(err)));
  }
}

function start() {
  $("create-agent").addEventListener("submit", createAgent);
  $("forget-key").addEventListener("click", () => {
    key.forget();
    location.reload();
  });
  window.addEventListener("hashchange", render);
  window.addEventListener("agents-changed", loadAgents);
  loadAgents().then(render);
}

start();
