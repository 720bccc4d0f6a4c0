// The OpenAI Node SDK (`openai` on npm) against memproxy: raw streams, the stream helper, non-streamed
// completions, a client tool round trip and the SDK's own tool runner.
import OpenAI from "openai";

import { run, weather, WEATHER_PARAMETERS } from "./common.mjs";

const WEATHER_TOOL = {
  type: "function",
  function: { name: "get_weather", description: "Current weather for a city", parameters: WEATHER_PARAMETERS },
};

function client(input) {
  return new OpenAI({
    baseURL: input.baseURL,
    apiKey: "unused",
    maxRetries: 0,
    timeout: 20_000,
    defaultHeaders: input.headers ?? {},
  });
}

async function drain(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

// ChatCompletionStream accumulates the deltas and throws on malformed ones (a tool call delta without
// an id or name, a second finish_reason...), so its final completion is the SDK's own verdict.
async function helperStream(c, body) {
  const stream = c.chat.completions.stream(body);
  const contentDeltas = [];
  stream.on("content", (delta) => contentDeltas.push(delta));
  const chunks = await drain(stream);
  const final = await stream.finalChatCompletion();
  return { chunks, final, contentDeltas };
}

await run({
  async stream(input) {
    const stream = await client(input).chat.completions.create({
      model: input.model,
      messages: input.messages,
      stream: true,
      stream_options: { include_usage: true },
    });
    return { chunks: await drain(stream) };
  },

  async stream_helper(input) {
    return helperStream(client(input), {
      model: input.model,
      messages: input.messages,
      stream_options: { include_usage: true },
    });
  },

  async nonstream(input) {
    const completion = await client(input).chat.completions.create({ model: input.model, messages: input.messages });
    return { completion };
  },

  async tool_round_trip(input) {
    const c = client(input);
    const messages = [...input.messages];
    const body = { model: input.model, tools: [WEATHER_TOOL], stream_options: { include_usage: true } };
    const first = await helperStream(c, { ...body, messages: [...messages] });
    const assistant = first.final.choices[0].message;
    messages.push(assistant); // the SDK's own message object goes back, as applications do
    for (const call of assistant.tool_calls ?? []) {
      const result = weather(JSON.parse(call.function.arguments));
      messages.push({ role: "tool", tool_call_id: call.id, content: JSON.stringify(result) });
    }
    const second = await helperStream(c, { ...body, messages });
    return { first, second, sent: messages };
  },

  async nonstream_tool_round_trip(input) {
    const c = client(input);
    const messages = [...input.messages];
    const first = await c.chat.completions.create({ model: input.model, messages: [...messages], tools: [WEATHER_TOOL] });
    const assistant = first.choices[0].message;
    messages.push(assistant);
    for (const call of assistant.tool_calls ?? []) {
      const result = weather(JSON.parse(call.function.arguments));
      messages.push({ role: "tool", tool_call_id: call.id, content: JSON.stringify(result) });
    }
    const second = await c.chat.completions.create({ model: input.model, messages, tools: [WEATHER_TOOL] });
    return { first, second };
  },

  // The SDK executes the tool itself and loops until the model answers.
  async run_tools(input) {
    const calls = [];
    const runner = client(input).chat.completions.runTools({
      model: input.model,
      messages: input.messages,
      stream: true,
      stream_options: { include_usage: true },
      tools: [
        {
          type: "function",
          function: {
            name: "get_weather",
            description: "Current weather for a city",
            parameters: WEATHER_PARAMETERS,
            parse: JSON.parse,
            function: async (args) => {
              calls.push(args);
              return weather(args);
            },
          },
        },
      ],
    });
    const errors = [];
    runner.on("error", (error) => errors.push(String(error)));
    const content = await runner.finalContent();
    const completions = runner.allChatCompletions();
    return {
      content,
      calls,
      errors,
      messages: runner.messages,
      finishReasons: completions.map((c) => c.choices[0].finish_reason),
      usages: completions.map((c) => c.usage ?? null),
      totalUsage: await runner.totalUsage(),
    };
  },
});
