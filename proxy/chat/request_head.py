"""The head of an agent's upstream request: model, stream flags, sampling, forwarded fields and tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from memory.agents import LiveAgent
from proxy.chat.protocol import ChatRequest

if TYPE_CHECKING:
    from proxy.chat.turn import TurnEnv
    from tools.rules import StepPlan


def upstream_model(handle: str, upstream_url: str) -> str:
    # Letta handles look like "openai/gpt-4o-mini"; OpenAI itself only knows the part after the slash.
    if handle.startswith("openai/") and "api.openai.com" in upstream_url:
        return handle.split("/", 1)[1]
    return handle


def request_tools(env: TurnEnv, live: LiveAgent, request: ChatRequest,
                  plan: StepPlan | None = None) -> list[dict[str, Any]]:
    """The agent's server tools (those its tool rules allow now), then the client's own (never filtered)."""
    names = live.agent.tools if plan is None or plan.allowed is None else [
        n for n in live.agent.tools if n in plan.allowed]
    tools = env.registry.schemas(tuple(names))
    return [*tools, *request.tools] if request.tools else tools


def request_head(env: TurnEnv, live: LiveAgent, request: ChatRequest, first_step: bool = True,
                 plan: StepPlan | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Everything of an upstream request but its messages: model, stream flags, sampling, tools."""
    head = fixed_head(env, live, request)
    tools = request_tools(env, live, request, plan)
    _add_tools(head, tools, request, first_step, plan)
    return head, tools


def fixed_head(env: TurnEnv, live: LiveAgent, request: ChatRequest) -> dict[str, Any]:
    """The part of the head every step of a turn shares: model, stream flags, sampling, forwarded fields."""
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
    return head


def _add_tools(head: dict[str, Any], tools: list[dict[str, Any]], request: ChatRequest, first_step: bool,
               plan: StepPlan | None) -> None:
    if tools:
        head["tools"] = tools
        forced = plan.tool_choice() if plan is not None else None
        if forced is not None:  # the agent's tool rules force this step's call, whatever the client asked
            head["tool_choice"] = forced
        # `tool_choice` shapes the turn's first step; repeating it would make "required" loop to max_steps.
        elif request.tool_choice is not None and first_step:
            head["tool_choice"] = request.tool_choice


class TurnHead:
    """A turn's request heads, built once per turn: each distinct step shape (the tools its rules allow,
    what they force, whether `tool_choice` still applies) is assembled and encoded on first use only."""

    def __init__(self, env: TurnEnv, live: LiveAgent, request: ChatRequest) -> None:
        self.env, self.live, self.request = env, live, request
        self._fixed = fixed_head(env, live, request)
        self._steps: dict[tuple[StepPlan | None, bool], tuple[bytes, list[dict[str, Any]]]] = {}

    def step(self, first_step: bool, plan: StepPlan | None) -> tuple[bytes, list[dict[str, Any]]]:
        """(the head's JSON without its closing brace, the tools it offers)."""
        key = (plan, first_step and self.request.tool_choice is not None)
        built = self._steps.get(key)
        if built is None:
            head = dict(self._fixed)
            tools = request_tools(self.env, self.live, self.request, plan)
            _add_tools(head, tools, self.request, first_step, plan)
            built = self._steps[key] = (orjson.dumps(head)[:-1], tools)
        return built

    def tools(self) -> list[dict[str, Any]]:
        """Every tool the turn may offer (its rules not applied)."""
        return self.step(False, None)[1]
