// Renders /openapi.json as plain HTML: operations, their parameters, bodies and answers, then the schemas.
"use strict";

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
};

const refName = (ref) => ref.split("/").pop();

// A one-line description of a schema: `Block`, `string | null`, `array of Tool`, `"asc" | "desc"`.
function typeOf(schema) {
  if (!schema) return "any";
  if (schema.$ref) return el("a", { href: "#schema-" + refName(schema.$ref) }, refName(schema.$ref));
  const parts = schema.anyOf || schema.oneOf;
  if (parts) {
    const span = el("span");
    parts.forEach((part, i) => { if (i) span.append(" | "); span.append(typeOf(part)); });
    return span;
  }
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  if (schema.type === "array") {
    const span = el("span", {}, "array of ");
    span.append(typeOf(schema.items));
    return span;
  }
  let text = schema.type || "any";
  if (schema.format) text += ` (${schema.format})`;
  return text;
}

function limits(schema) {
  if (!schema) return "";
  const parts = schema.anyOf || schema.oneOf;
  if (parts) return parts.map(limits).filter(Boolean).join(", ");
  const out = [];
  for (const key of ["minimum", "maximum", "maxLength", "maxItems"]) {
    if (schema[key] !== undefined) out.push(`${key} ${schema[key]}`);
  }
  return out.join(", ");
}

function fieldTable(rows) {
  const table = el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "type"), el("th", {}, "notes")));
  for (const [name, schema, required, description] of rows) {
    const notes = [required ? "required" : "", limits(schema), description || (schema && schema.description) || ""];
    table.append(el("tr", {}, el("td", {}, el("code", {}, name)), el("td", { class: "type" }, typeOf(schema)),
      el("td", {}, notes.filter(Boolean).join("; "))));
  }
  return table;
}

function renderOperation(path, method, op) {
  const id = "op-" + op.operationId;
  const box = el("section", { class: "op", id, "data-search": `${method} ${path} ${op.summary} ${op.tags}`.toLowerCase() });
  const title = el("h3", {}, el("span", { class: `method ${method.toUpperCase()}` }, method.toUpperCase()), path);
  for (const tag of op.tags || []) title.append(el("span", { class: "tag" }, tag));
  box.append(title, el("p", {}, op.summary || ""));
  if (op.description) box.append(el("p", {}, op.description));
  if (op.parameters && op.parameters.length) {
    box.append(el("h4", {}, "Parameters"));
    box.append(fieldTable(op.parameters.map((p) => [`${p.name} (${p.in})`, p.schema, p.required, p.description])));
  }
  const body = op.requestBody && op.requestBody.content["application/json"];
  if (body) {
    const line = el("p", {}, "Body: ");
    line.append(typeOf(body.schema));
    if (!op.requestBody.required) line.append(" (optional)");
    box.append(el("h4", {}, "Request body"), line);
  }
  box.append(el("h4", {}, "Responses"));
  const table = el("table");
  for (const [status, answer] of Object.entries(op.responses || {})) {
    const cell = el("td", { class: "type" });
    for (const [media, content] of Object.entries(answer.content || {})) {
      cell.append(media + ": ");
      cell.append(typeOf(content.schema));
      cell.append(el("br"));
    }
    table.append(el("tr", {}, el("td", {}, status), el("td", {}, answer.description || ""), cell));
  }
  box.append(table);
  return box;
}

function renderSchema(name, schema) {
  const box = el("div", { class: "schema", id: "schema-" + name }, el("h3", {}, name));
  if (schema.description) box.append(el("p", {}, schema.description));
  if (schema.properties) {
    const required = new Set(schema.required || []);
    box.append(fieldTable(Object.entries(schema.properties).map(([k, v]) => [k, v, required.has(k), v.description])));
  } else {
    box.append(el("p", { class: "type" }, typeOf(schema)));
  }
  return box;
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  const about = document.getElementById("about");
  about.textContent = `${spec.info.title} ${spec.info.version} — OpenAPI ${spec.openapi}. ${spec.info.description || ""} `;
  about.append(el("a", { href: "/openapi.json" }, "Raw document"));
  const main = document.getElementById("operations");
  const toc = document.getElementById("toc");
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      main.append(renderOperation(path, method, op));
      toc.append(el("a", { href: `#op-${op.operationId}` }, `${method.toUpperCase()} ${path}`));
    }
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries(spec.components.schemas || {})) schemas.append(renderSchema(name, schema));
  document.getElementById("filter").addEventListener("input", (event) => {
    const words = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const op of main.children) {
      op.classList.toggle("hidden", !words.every((w) => op.dataset.search.includes(w)));
    }
  });
}

main().catch((error) => { document.getElementById("about").textContent = "Could not load /openapi.json: " + error; });
