"""The head of an agent's upstream request: model, stream flags, sampling, forwarded fields and tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memory.agents import LiveAgent
from proxy.chat.protocol import ChatRequest

if TYPE_CHECKING:
    from proxy.chat.turn import TurnEnv


def upstream_model(handle: str, upstream_url: str) -> str:
    # Letta handles look like "openai/gpt-4o-mini"; OpenAI itself only knows the part after the slash.
    if handle.startswith("openai/") and "api.openai.com" in upstream_url:
        return handle.split("/", 1)[1]
    return handle


def request_tools(env: TurnEnv, live: LiveAgent, request: ChatRequest) -> list[dict[str, Any]]:
    """The agent's server tools, then the client's own."""
    tools = env.registry.schemas(tuple(live.agent.tools))
    return [*tools, *request.tools] if request.tools else tools


def request_head(env: TurnEnv, live: LiveAgent, request: ChatRequest,
                 first_step: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Everything of an upstream request but its messages: model, stream flags, sampling, tools."""
    agent = live.agent
    head: dict[str, Any] = {"model": upstream_model(agent.model, env.upstream.base_url), "stream": True,
                            "stream_options": {"include_usage": True}}
    head.update(agent.llm_params)
    # One token limit, named as the request named it (reasoning models refuse `max_tokens`).
    if "max_completion_tokens" in request.sampling:
        head.pop("max_tokens", None)
    elif "max_tokens" in request.sampling:
        head.pop("max_completion_tokens", None)
    head.update(request.sampling)
    head.update(request.forwarded)
    tools = request_tools(env, live, request)
    if tools:
        head["tools"] = tools
        # `tool_choice` shapes the turn's first step; repeating it would make "required" loop to max_steps.
        if request.tool_choice is not None and first_step:
            head["tool_choice"] = request.tool_choice
    return head, tools
