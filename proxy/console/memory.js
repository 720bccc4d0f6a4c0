// Core memory: every block of the agent, editable in place, with its size against its limit.

import { call } from "./api.js";
import { clear, errorText, h, when } from "./dom.js";

export async function memoryPanel(root, agent, { withKey }) {
  const path = `/v1/agents/${encodeURIComponent(agent.id)}/core-memory/blocks`;
  const blocks = await withKey(() => call("GET", path));
  if (!blocks.length) {
    clear(root, h("p", { class: "muted" }, "This agent has no memory blocks."));
    return;
  }
  clear(root, blocks.map((block) => blockEditor(block, path, withKey)));
}

function blockEditor(block, path, withKey) {
  const text = h("textarea", { name: block.label, rows: Math.min(12, Math.max(3, block.value.split("\n").length + 1)),
    readonly: block.read_only, spellcheck: "false" });
  text.value = block.value;
  const count = h("span", { class: "count", dataset: { role: "count" } });
  const note = h("span", { class: "note", dataset: { role: "note" }, role: "status" });
  const save = h("button", { type: "submit", disabled: true }, "Save");
  const updated = h("small", { class: "muted" }, `updated ${when(block.updated_at)}`);
  let saved = block.value;

  const refresh = () => {
    const size = text.value.length;
    count.textContent = `${size} / ${block.limit} chars`;
    count.classList.toggle("over", size > block.limit);
    save.disabled = block.read_only || text.value === saved;
  };
  text.addEventListener("input", () => {
    note.textContent = "";
    note.className = "note";
    refresh();
  });
  refresh();

  const form = h("form", { class: "block", dataset: { label: block.label } },
    h("div", { class: "block-head" },
      h("h3", {}, block.label, block.read_only ? h("span", { class: "tag" }, "read-only") : null),
      count),
    block.description ? h("p", { class: "muted small" }, block.description) : null,
    text,
    h("div", { class: "block-foot" }, save, note, updated));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    note.textContent = "Saving…";
    note.className = "note";
    try {
      const result = await withKey(() => call("PATCH", `${path}/${encodeURIComponent(block.label)}`,
        { value: text.value }));
      saved = result.value;
      text.value = result.value;
      updated.textContent = `updated ${when(result.updated_at)}`;
      note.textContent = "Saved";
      note.classList.add("ok");
    } catch (err) {
      note.textContent = errorText(err);
      note.classList.add("error");
    }
    refresh();
  });
  return form;
}
