// The console's only way to the server: JSON calls and the chat stream, each with the bearer key if one is set.

const KEY_ITEM = "memproxy.apiKey";

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.error ? body.error : {};
    super(detail.message || `HTTP ${status}`);
    this.status = status;
    this.code = detail.code || null;
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY_ITEM),
  set: (value) => sessionStorage.setItem(KEY_ITEM, value),
  forget: () => sessionStorage.removeItem(KEY_ITEM),
};

function headers(json) {
  const out = { Accept: "application/json" };
  const k = key.get();
  if (k) out.Authorization = `Bearer ${k}`;
  if (json) out["Content-Type"] = "application/json";
  return out;
}

async function fail(resp) {
  const body = await resp.json().catch(() => null);
  return new ApiError(resp.status, body);
}

export async function call(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw await fail(resp);
  if (resp.status === 204) return null;
  return resp.json();
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") q.set(name, value);
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

// `memproxy;dur=1.2, upstream;dur=300` as {memproxy: 1.2, upstream: 300} (milliseconds).
export function serverTiming(header) {
  const out = {};
  for (const entry of (header || "").split(",")) {
    const [name, ...params] = entry.trim().split(";");
    const dur = params.map((p) => p.trim()).find((p) => p.startsWith("dur="));
    if (name && dur) out[name] = Number(dur.slice(4));
  }
  return out;
}

// One agent turn, streamed. Yields {type: "start"|"delta"|"keepalive"|"finish"|"usage"|"error"|"done", ...}.
export async function* streamTurn(agentId, text, signal) {
  const resp = await fetch("/v1/chat/completions", {
    method: "POST",
    headers: { ...headers(true), Accept: "text/event-stream" },
    body: JSON.stringify({
      model: agentId,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: text }],
    }),
    signal,
  });
  if (!resp.ok) throw await fail(resp);
  yield { type: "start", runId: resp.headers.get("X-Memproxy-Run-Id"), timing: serverTiming(resp.headers.get("Server-Timing")) };
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      yield* parseEvent(block);
    }
  }
  if (buffer.trim()) yield* parseEvent(buffer);
}

function* parseEvent(block) {
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) yield { type: "keepalive" };
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;
  const payload = data.join("\n");
  if (payload === "[DONE]") {
    yield { type: "done" };
    return;
  }
  const chunk = JSON.parse(payload);
  if (chunk.error) {
    yield { type: "error", error: new ApiError(0, chunk) };
    return;
  }
  if (chunk.usage) yield { type: "usage", usage: chunk.usage };
  for (const choice of chunk.choices || []) {
    const delta = choice.delta || {};
    if (delta.content) yield { type: "delta", text: delta.content };
    if (delta.tool_calls) yield { type: "client_tool", calls: delta.tool_calls };
    if (choice.finish_reason) yield { type: "finish", reason: choice.finish_reason };
  }
}
