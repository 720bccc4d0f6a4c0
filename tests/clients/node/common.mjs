// Shared by the client scripts: read the JSON payload from stdin, print one JSON result line.

export async function readInput() {
  const parts = [];
  for await (const part of process.stdin) parts.push(part);
  return JSON.parse(Buffer.concat(parts).toString("utf8") || "{}");
}

export function describeError(error) {
  if (error === null || typeof error !== "object") return { message: String(error) };
  const out = { name: error.name, message: error.message };
  for (const key of ["status", "statusCode", "code", "type", "param", "url", "responseBody", "error", "isRetryable"]) {
    if (error[key] !== undefined) out[key] = error[key];
  }
  if (error.cause) out.cause = describeError(error.cause);
  if (error.stack) out.stack = String(error.stack).split("\n").slice(0, 8).join("\n");
  return out;
}

export function weather({ city }) {
  return { city, forecast: "sunny", temperature_c: 21 };
}

export const WEATHER_PARAMETERS = {
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
  additionalProperties: false,
};

export async function run(scenarios) {
  let result;
  try {
    const input = await readInput();
    const scenario = scenarios[input.scenario];
    if (!scenario) throw new Error(`unknown scenario ${input.scenario}`);
    result = { ok: true, result: await scenario(input) };
  } catch (error) {
    result = { ok: false, error: describeError(error) };
    process.exitCode = 1;
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}
