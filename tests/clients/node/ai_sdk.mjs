// The Vercel AI SDK (`ai` + `@ai-sdk/openai-compatible`) against memproxy: generateText and streamText
// with a client tool the SDK executes itself over several steps.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

import { describeError, run, weather } from "./common.mjs";

function model(input) {
  const provider = createOpenAICompatible({
    name: "memproxy",
    baseURL: input.baseURL,
    apiKey: "unused",
    includeUsage: true,
    headers: input.headers ?? {},
  });
  return provider.chatModel(input.model);
}

function weatherTool(calls) {
  return tool({
    description: "Current weather for a city",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => {
      calls.push({ city });
      return weather({ city });
    },
  });
}

function step(s) {
  return {
    finishReason: s.finishReason,
    rawFinishReason: s.rawFinishReason,
    text: s.text,
    toolCalls: s.toolCalls.map((c) => ({ toolCallId: c.toolCallId, toolName: c.toolName, input: c.input })),
    toolResults: s.toolResults.map((r) => ({ toolCallId: r.toolCallId, toolName: r.toolName, output: r.output })),
    usage: s.usage,
    warnings: s.warnings ?? [],
    responseId: s.response?.id,
    modelId: s.response?.modelId,
  };
}

function request(input, calls) {
  const body = { model: model(input), messages: input.messages, maxRetries: 0 };
  if (input.tools !== false) {
    body.tools = { get_weather: weatherTool(calls) };
    body.stopWhen = stepCountIs(3);
  }
  return body;
}

await run({
  async generate(input) {
    const calls = [];
    const result = await generateText(request(input, calls));
    return {
      text: result.text,
      finishReason: result.finishReason,
      usage: result.usage,
      totalUsage: result.totalUsage,
      steps: result.steps.map(step),
      calls,
      warnings: result.warnings ?? [],
    };
  },

  async stream(input) {
    const calls = [];
    const errors = [];
    const parts = [];
    let finishEvent = null;
    const result = streamText({
      ...request(input, calls),
      onError: ({ error }) => errors.push(describeError(error)),
      onFinish: (event) => {
        finishEvent = { finishReason: event.finishReason, totalUsage: event.totalUsage, text: event.text };
      },
    });
    for await (const part of result.fullStream) {
      parts.push(part.type);
      if (part.type === "error") errors.push(describeError(part.error));
    }
    return {
      text: await result.text,
      finishReason: await result.finishReason,
      usage: await result.usage,
      totalUsage: await result.totalUsage,
      steps: (await result.steps).map(step),
      calls,
      errors,
      parts,
      finishEvent,
    };
  },
});
