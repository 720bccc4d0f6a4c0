// Why the agent answered as it did: run timings, what fills its context window, and recall/archival search.

import { call, query } from "./api.js";
import { clear, errorText, h, ms, s, when } from "./dom.js";
import { messageView } from "./chat.js";

const CHART_WIDTH = 720;
const LABEL_WIDTH = 170;
const ROW = 26;

function legend(items) {
  return h("ul", { class: "legend" }, items.map(([cls, text]) =>
    h("li", {}, h("span", { class: `swatch ${cls}` }), text)));
}

// One row per run: upstream, tool and memproxy's own time stacked to the total, TTFT as a tick.
export function timingsChart(runs) {
  const scale = Math.max(1, ...runs.map((r) => r.timings.total_ms || 0));
  const span = CHART_WIDTH - LABEL_WIDTH - 70;
  const x = (value) => LABEL_WIDTH + (value / scale) * span;
  const svg = s("svg", { class: "chart", id: "timings-chart", width: CHART_WIDTH, height: runs.length * ROW + 24,
    viewBox: `0 0 ${CHART_WIDTH} ${runs.length * ROW + 24}`, role: "img", "aria-label": "run timings" });
  runs.forEach((run, i) => {
    const t = run.timings;
    const y = i * ROW + 4;
    const upstream = t.upstream_ms || 0;
    const tool = t.tool_ms || 0;
    const total = t.total_ms || 0;
    const own = Math.max(0, total - upstream - tool);
    svg.append(s("text", { x: 0, y: y + 14, class: "label" }, `${new Date(run.created_at).toLocaleTimeString()} ${run.status}`));
    let at = 0;
    for (const [cls, value, name] of [["upstream", upstream, "upstream"], ["tool", tool, "tools"], ["own", own, "memproxy"]]) {
      if (value <= 0) continue;
      svg.append(s("rect", { x: x(at), y, width: Math.max(1, x(at + value) - x(at)), height: ROW - 8, class: `bar ${cls}` },
        s("title", {}, `${name}: ${ms(value)}`)));
      at += value;
    }
    if (t.ttft_ms !== undefined) {
      svg.append(s("line", { x1: x(t.ttft_ms), x2: x(t.ttft_ms), y1: y - 2, y2: y + ROW - 6, class: "ttft" },
        s("title", {}, `TTFT: ${ms(t.ttft_ms)}`)));
    }
    svg.append(s("text", { x: x(total) + 4, y: y + 14, class: "value" }, ms(total)));
  });
  svg.append(s("text", { x: LABEL_WIDTH, y: runs.length * ROW + 20, class: "axis" }, "0"));
  svg.append(s("text", { x: LABEL_WIDTH + span, y: runs.length * ROW + 20, class: "axis", "text-anchor": "end" }, ms(scale)));
  return svg;
}

export async function runsPanel(root, agent, { withKey }) {
  const runs = await withKey(() => call("GET", `/v1/runs/${query({ agent_id: agent.id, limit: 20 })}`));
  if (!runs.length) {
    clear(root, h("p", { class: "muted" }, "No runs yet: chat a turn first."));
    return;
  }
  const table = h("table", { class: "runs" },
    h("thead", {}, h("tr", {}, ["run", "started", "status", "stop", "steps", "TTFT", "upstream", "tools", "total", "tokens"]
      .map((c) => h("th", {}, c)))),
    h("tbody", {}, runs.map((r) => h("tr", { dataset: { id: r.id } },
      h("td", { class: "mono" }, r.id.slice(0, 12) + "…"), h("td", {}, when(r.created_at)), h("td", {}, r.status),
      h("td", {}, r.stop_reason || ""), h("td", {}, r.steps), h("td", {}, ms(r.timings.ttft_ms)),
      h("td", {}, ms(r.timings.upstream_ms)), h("td", {}, ms(r.timings.tool_ms)), h("td", {}, ms(r.timings.total_ms)),
      h("td", {}, r.usage.total_tokens)))));
  clear(root,
    h("h2", {}, "Run timings, newest first"),
    legend([["upstream", "upstream calls"], ["tool", "server tools"], ["own", "memproxy (store, prompt, queue)"], ["ttft", "time to first token"]]),
    timingsChart(runs), table);
}

const SEGMENTS = [
  ["system", "system prompt", (c) => c.num_tokens_system + c.num_tokens_external_memory_summary],
  ["blocks", "memory blocks", (c) => c.num_tokens_core_memory],
  ["summary", "summary", (c) => c.num_tokens_summary_memory],
  ["messages", "messages", (c) => c.num_tokens_messages],
  ["tools", "tool definitions", (c) => c.num_tokens_functions_definitions],
];

function stackedBar(id, parts, whole, label) {
  const bar = h("div", { class: "stacked", id, role: "img", "aria-label": label });
  for (const [cls, name, n] of parts) {
    if (n <= 0) continue;
    const seg = h("div", { class: `seg ${cls}`, title: `${name}: ${n} tokens`, dataset: { segment: cls } });
    seg.style.width = `${Math.max(0.3, (n / Math.max(1, whole)) * 100)}%`;
    bar.append(seg);
  }
  return bar;
}

export async function contextPanel(root, agent, { withKey }) {
  const c = await withKey(() => call("GET", `/v1/agents/${encodeURIComponent(agent.id)}/context`));
  const max = c.context_window_size_max;
  const parts = SEGMENTS.map(([cls, label, pick]) => [cls, label, pick(c) || 0]);
  const used = parts.reduce((sum, [, , n]) => sum + n, 0);
  // The window to scale (small agents fill a sliver of it), then what the used part is made of.
  const bar = stackedBar("context-bar", parts, max, `context window: ${used} of ${max} tokens`);
  const mix = stackedBar("context-parts", parts, used, "what the used part of the window holds");
  const percent = ((c.context_window_size_current / max) * 100).toFixed(1);
  clear(root,
    h("h2", {}, `Context window: ${c.context_window_size_current} of ${max} tokens (${percent}%)`),
    bar,
    h("h3", {}, "What the used part holds"),
    mix,
    legend(parts.map(([cls, label, n]) => [cls, `${label}: ${n}`])),
    h("dl", { class: "facts" },
      h("dt", {}, "messages in context"), h("dd", {}, c.num_messages),
      h("dt", {}, "recall (stored messages)"), h("dd", {}, c.num_recall_memory),
      h("dt", {}, "archival passages"), h("dd", {}, c.num_archival_memory)),
    c.summary_memory ? h("details", {}, h("summary", {}, "Summary"), h("pre", {}, c.summary_memory)) : null,
    h("details", {}, h("summary", {}, "Compiled core memory"), h("pre", {}, c.core_memory)));
}

export async function searchPanel(root, agent, { withKey }) {
  const recallOut = h("div", { class: "results", id: "recall-results" });
  const archivalOut = h("div", { class: "results", id: "archival-results" });
  const recall = h("form", { class: "search", id: "recall-search" },
    h("h2", {}, "Recall (past messages)"),
    h("div", { class: "row" },
      h("input", { name: "query", placeholder: "what was said…", required: true }),
      h("select", { name: "mode" }, ["hybrid", "fts", "vector"].map((m) => h("option", { value: m }, m))),
      h("button", { type: "submit" }, "Search")));
  const archival = h("form", { class: "search", id: "archival-search" },
    h("h2", {}, "Archival memory"),
    h("div", { class: "row" },
      h("input", { name: "query", placeholder: "search passages…", required: true }),
      h("button", { type: "submit" }, "Search")));
  const insert = h("form", { class: "search", id: "archival-insert" },
    h("div", { class: "row" },
      h("input", { name: "text", placeholder: "a new passage to remember…", required: true }),
      h("button", { type: "submit" }, "Add passage")));
  clear(root, recall, recallOut, archival, archivalOut, insert);

  const guard = (out, action) => async (event) => {
    event.preventDefault();
    clear(out, h("p", { class: "muted" }, "Searching…"));
    try {
      await action(event.currentTarget.elements);
    } catch (err) {
      clear(out, h("p", { class: "error" }, errorText(err)));
    }
  };
  recall.addEventListener("submit", guard(recallOut, async (f) => {
    const hits = await withKey(() => call("POST", "/v1/agents/messages/search",
      { agent_id: agent.id, query: f.query.value, search_mode: f.mode.value, limit: 20 }));
    clear(recallOut, hits.length ? hits.map((hit) => messageView({
      id: hit.message.id, message_type: `${hit.message.role === "tool" ? "tool_return" : hit.message.role}_message`,
      date: hit.message.created_at, content: hit.embedded_text, tool_return: hit.embedded_text,
    })) : h("p", { class: "muted" }, "No matches."));
  }));
  archival.addEventListener("submit", guard(archivalOut, async (f) => {
    const path = `/v1/agents/${encodeURIComponent(agent.id)}/archival-memory/search`;
    const found = await withKey(() => call("GET", path + query({ query: f.query.value, top_k: 20 })));
    clear(archivalOut, found.results.length ? found.results.map((r) => h("div", { class: "passage" },
      h("div", { class: "msg-meta" }, h("time", {}, r.timestamp), r.tags.map((t) => h("span", { class: "tag" }, t))),
      h("div", { class: "msg-text" }, r.content))) : h("p", { class: "muted" }, "No matches."));
  }));
  insert.addEventListener("submit", guard(archivalOut, async (f) => {
    const path = `/v1/agents/${encodeURIComponent(agent.id)}/archival-memory`;
    const made = await withKey(() => call("POST", path, { text: f.text.value }));
    f.text.value = "";
    clear(archivalOut, h("p", { class: "ok" }, `Added ${made.length} passage${made.length === 1 ? "" : "s"}.`));
  }));
}
