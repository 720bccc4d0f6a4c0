// The chat pane (one streamed turn at a time, tool steps shown once stored) and the paged message history.

import { call, query, streamTurn } from "./api.js";
import { clear, errorText, h, ms, when } from "./dom.js";

const KIND = {
  user_message: "user",
  assistant_message: "assistant",
  reasoning_message: "reasoning",
  tool_call_message: "tool call",
  tool_return_message: "tool result",
  system_message: "system",
};

function contentText(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content.map((part) => (part.type === "text" ? part.text : `[${part.type}]`)).join(" ");
}

function messageText(m) {
  switch (m.message_type) {
    case "tool_call_message":
      return `${m.tool_call.name}(${m.tool_call.arguments})`;
    case "tool_return_message":
      return m.tool_return;
    case "reasoning_message":
      return m.reasoning;
    default:
      return contentText(m.content);
  }
}

export function messageView(m) {
  const kind = KIND[m.message_type] || m.message_type;
  const failed = m.message_type === "tool_return_message" && m.status === "error";
  return h("div", { class: `msg ${m.message_type}${failed ? " failed" : ""}`, dataset: { id: m.id } },
    h("div", { class: "msg-meta" }, h("span", { class: "kind" }, kind), h("time", {}, when(m.date))),
    h("div", { class: "msg-text" }, messageText(m)));
}

export async function chatPanel(root, agent, { withKey }) {
  const base = `/v1/agents/${encodeURIComponent(agent.id)}`;
  const recent = await withKey(() => call("GET", `${base}/messages${query({ order: "desc", limit: 30 })}`));
  const log = h("div", { class: "chat-log", id: "chat-log" }, recent.reverse().map(messageView));
  const input = h("textarea", { name: "message", rows: 3, placeholder: "Say something to the agent…", required: true });
  const send = h("button", { type: "submit" }, "Send");
  const form = h("form", { class: "chat-form" }, input, send);
  clear(root, log, form);
  log.scrollTop = log.scrollHeight;

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    send.disabled = true;
    await runTurn(log, agent, base, text, withKey);
    send.disabled = false;
    input.focus();
  });
}

async function runTurn(log, agent, base, text, withKey) {
  log.append(h("div", { class: "msg user_message pending" },
    h("div", { class: "msg-meta" }, h("span", { class: "kind" }, "user")), h("div", { class: "msg-text" }, text)));
  const working = h("div", { class: "working", id: "working", role: "status" }, "waiting for the model…");
  const answer = h("div", { class: "msg-text" });
  const bubble = h("div", { class: "msg assistant_message streaming", id: "streaming" },
    h("div", { class: "msg-meta" }, h("span", { class: "kind" }, "assistant")), answer);
  const steps = h("div", { class: "steps" });
  log.append(steps, working, bubble);
  let keepalives = 0;
  let stepsSeen = 0;
  let polling = false;
  const scroll = () => { log.scrollTop = log.scrollHeight; };
  let running = null;
  let runId = null;
  let timing = {};
  const describe = () => {
    const parts = running ? [`step ${running.steps} of ${running.id.slice(0, 12)}…`] : [];
    parts.push(`${keepalives} keep-alive${keepalives > 1 ? "s" : ""}`);
    working.textContent = `working… (${parts.join(", ")})`;
  };
  // The run in flight is listed with its step count: poll it while keep-alives say tools or the model run.
  const poll = async () => {
    polling = true;
    try {
      const run = runId ? await call("GET", `/v1/runs/${encodeURIComponent(runId)}`) : null;
      running = run && run.status === "running" ? run : null;
      if (running) stepsSeen = Math.max(stepsSeen, running.steps);
      if (working.classList.contains("active")) describe();
    } catch {
      // the stream itself reports what matters; a missed poll only leaves the indicator plainer
    }
    polling = false;
  };
  try {
    await withKey(async () => {
      for await (const event of streamTurn(agent.id, text)) {
        if (event.type === "start") {
          ({ runId, timing } = event);
        } else if (event.type === "keepalive") {
          keepalives += 1;
          working.classList.add("active");
          describe();
          if (!polling) poll();
        } else if (event.type === "delta") {
          working.classList.remove("active");
          working.textContent = "";
          answer.append(event.text);
        } else if (event.type === "client_tool") {
          answer.append(h("em", {}, " [client tool call]"));
        } else if (event.type === "error") {
          throw event.error;
        }
        scroll();
      }
    });
    bubble.classList.remove("streaming");
    bubble.dataset.keepalives = keepalives;  // what the indicator had to show, for whoever inspects the page
    bubble.dataset.stepsSeen = stepsSeen;
    working.remove();
  } catch (err) {
    working.remove();
    bubble.classList.remove("streaming");
    bubble.classList.add("failed");
    answer.append(h("p", { class: "error" }, errorText(err)));
  }
  bubble.removeAttribute("id");
  await showSteps(steps, bubble, { base, runId, timing }, withKey);
  scroll();
}

// The OpenAI stream hides server tool calls; the stored history and the run show what happened.
async function showSteps(steps, bubble, { base, runId, timing }, withKey) {
  if (!runId) return;  // refused before a run began: the error is already shown
  try {
    const [newest, run] = await Promise.all([
      withKey(() => call("GET", `${base}/messages${query({ order: "desc", limit: 50 })}`)),
      withKey(() => call("GET", `/v1/runs/${encodeURIComponent(runId)}`)),
    ]);
    const turn = newest.filter((m) => m.run_id === runId && (m.message_type.startsWith("tool_")
      || m.message_type === "reasoning_message")).reverse();
    clear(steps, turn.map(messageView));
    const t = run.timings || {};
    const own = timing.memproxy === undefined ? "" : ` · memproxy before upstream ${ms(timing.memproxy)}`;
    bubble.append(h("div", { class: "run-line" },
      `${run.status} · ${run.stop_reason || ""} · ${run.steps} step${run.steps === 1 ? "" : "s"}`
      + ` · TTFT ${ms(t.ttft_ms)} · total ${ms(t.total_ms)}${own}`));
  } catch (err) {
    steps.append(h("p", { class: "error" }, `could not load the turn's steps: ${errorText(err)}`));
  }
}

export async function historyPanel(root, agent, { withKey }) {
  const path = `/v1/agents/${encodeURIComponent(agent.id)}/messages`;
  const limitPick = h("select", { name: "limit" }, [5, 20, 50, 100].map((n) => h("option", { value: n, selected: n === 20 }, n)));
  const newer = h("button", { type: "button", dataset: { role: "newer" } }, "← Newer");
  const older = h("button", { type: "button", dataset: { role: "older" } }, "Older →");
  const info = h("span", { class: "muted" });
  const list = h("div", { class: "history", id: "history" });
  clear(root, h("div", { class: "pager" }, newer, older, h("label", {}, "per page ", limitPick), info), list);

  let first = 0;
  // Show one page; a page that comes back empty leaves the current one in place.
  const load = async (cursor, at) => {
    const limit = Number(limitPick.value);
    const rows = await withKey(() => call("GET", path + query({ order: "desc", limit, ...cursor })));
    if (!rows.length && (cursor.before || cursor.after)) {
      info.textContent = "no more messages";
      (cursor.after ? older : newer).disabled = true;
      return;
    }
    const ids = [...new Set(rows.map((m) => m.id))];
    first = at;
    clear(list, rows.length ? rows.map(messageView) : h("p", { class: "muted" }, "No messages yet."));
    list.dataset.first = ids[0] || "";
    list.dataset.last = ids[ids.length - 1] || "";
    newer.disabled = first === 0;
    older.disabled = ids.length < limit;
    info.textContent = rows.length ? `messages ${first + 1}–${first + ids.length}, newest first` : "";
  };
  const show = (cursor, at) => load(cursor, at).catch((err) => { info.textContent = errorText(err); });
  older.addEventListener("click", () => show({ after: list.dataset.last }, first + Number(limitPick.value)));
  newer.addEventListener("click", () => {
    const at = Math.max(0, first - Number(limitPick.value));
    show(at === 0 ? {} : { before: list.dataset.first }, at);
  });
  limitPick.addEventListener("change", () => show({}, 0));
  await load({}, 0);
}
