"""An agent's tool rules through the API: validated on create/modify, kept in step with its tools, approvals set."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from memory.models import Agent
from proxy.api.lookup import require_agent, runtime, save_agent
from proxy.errors import APIError, unprocessable
from proxy.api.wire.tools import ApprovalQuery, ApprovalUpdate
from proxy.http import json_response
from tools.registry import ToolRegistry
from tools.rules import RuleError, check_tools, load, parse_rules, rules_json, set_approval, without_tool


def _approval_default(registry: ToolRegistry, name: str) -> bool:
    tool = registry.get(name)
    return bool(tool is not None and tool.record is not None and getattr(tool.record, "default_requires_approval",
                                                                         False))


def rules_for(body: dict[str, Any], tools: list[str], old: Agent | None, registry: ToolRegistry) -> list[dict[str, Any]]:
    """The rules an agent keeps after a create or modify body: `tool_rules` when given (checked against the
    agent's resulting tools), else its current rules less those naming tools it lost; tools newly attached
    with `default_requires_approval` get a requires_approval rule. 422 naming the field when a rule is bad."""
    raw = body.get("tool_rules")
    old_tools = set(old.tools) if old is not None else set()
    try:
        if raw is not None:
            rules = parse_rules(raw)
            check_tools(rules, tools)
        else:
            rules = load(old.tool_rules) if old is not None else []
            for name in old_tools - set(tools):
                rules = without_tool(rules, name)
    except RuleError as exc:
        raise unprocessable(str(exc), param=exc.param, code="invalid_tool_rule") from None
    named = {r.tool_name for r in rules if r.type == "requires_approval"}
    for name in tools:
        if name not in old_tools and name not in named and _approval_default(registry, name):
            rules = set_approval(rules, name, True)
    return rules_json(rules)


def imported_rules(raw: Any, tools: list[str]) -> list[dict[str, Any]]:
    """An agent file's rules: checked for shape and type (422 naming the field), and those naming a tool the
    imported agent does not get are left out (Letta's files carry rules for base tools they do not list)."""
    try:
        rules = parse_rules(raw)
    except RuleError as exc:
        raise unprocessable(str(exc), param=exc.param, code="invalid_tool_rule") from None
    have = set(tools)
    return rules_json([rule for rule in rules if have.issuperset(rule.names())])


def attached(agent: Agent, name: str, registry: ToolRegistry) -> list[dict[str, Any]]:
    """The rules after attaching a tool (its default approval requirement applied)."""
    if not _approval_default(registry, name) or any(
            r.get("type") == "requires_approval" and r.get("tool_name") == name for r in agent.tool_rules):
        return agent.tool_rules
    return rules_json(set_approval(load(agent.tool_rules), name, True))


def detached(agent: Agent, *names: str) -> list[dict[str, Any]]:
    """The rules after detaching tools: every rule that mentions one goes."""
    rules = load(agent.tool_rules)
    for name in names:
        rules = without_tool(rules, name)
    return rules_json(rules)


async def modify_approval(request: Request, body: ApprovalUpdate, query: ApprovalQuery) -> Response:
    """Letta's `PATCH /v1/agents/{id}/tools/approval/{tool_name}` with `{"requires_approval": bool}`."""
    from proxy.api.agents import state

    rt = runtime(request)
    live = await require_agent(request)
    name = request.path_params["tool_name"]
    required = body.requires_approval if body.requires_approval is not None else body.body_requires_approval
    if required is None and query.requires_approval is not None:  # Letta's deprecated query parameter
        required = query.requires_approval.lower() == "true"
    if required is None:
        raise unprocessable("`requires_approval` must be true or false", param="requires_approval")
    if name not in live.agent.tools:
        raise APIError(404, f"the agent has no tool named {name!r}; attach it first", param="tool_name",
                       code="tool_not_found")
    rules = rules_json(set_approval(load(live.agent.tool_rules), name, required))
    if rules != live.agent.tool_rules:
        live = await save_agent(rt.memory, replace(live.agent, tool_rules=rules))
    return json_response(state(rt, live))
