"""Letta's tool rules: parsed once, then asked, step by step, which tools the model may call next.

Pure functions over plain data (no I/O, no HTTP): the turn loop hands in the rules, the server tool calls
made since the user last spoke (name and output, in order), and gets back what the next upstream request
may offer and force, whether a call may run, and whether the loop must stop or go on.
Client tools (sent by an OpenAI client per request) are outside these rules: rules are checked against the
agent's own tools, so they can never name one, and the loop never removes them from a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

# Letta's rule types; `child` is accepted as a short name for Letta's `constrain_child_tools`.
RULE_TYPES = ("run_first", "exit_loop", "continue_loop", "constrain_child_tools", "max_count_per_step",
              "required_before_exit", "conditional", "parent_last_tool", "requires_approval")
_ALIASES = {"child": "constrain_child_tools"}
_MAX_RULES = 256
_MAX_NAMES = 256


class RuleError(ValueError):
    """A tool rule that cannot be accepted; `param` names the offending field (e.g. `tool_rules[2].children`)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ToolRule:
    type: str
    tool_name: str
    children: tuple[str, ...] = ()
    max_count_limit: int = 0
    child_output_mapping: tuple[tuple[str, str], ...] = ()
    default_child: str | None = None
    require_output_mapping: bool = False
    prompt_template: str | None = None

    def names(self) -> list[str]:
        """Every tool this rule mentions."""
        out = [self.tool_name, *self.children, *(child for _, child in self.child_output_mapping)]
        return out + [self.default_child] if self.default_child else out

    def json(self) -> dict[str, Any]:
        """Letta's ToolRule object for this rule."""
        out: dict[str, Any] = {"tool_name": self.tool_name, "type": self.type, "prompt_template": self.prompt_template}
        if self.type in ("constrain_child_tools", "parent_last_tool"):
            out["children"] = list(self.children)
        elif self.type == "max_count_per_step":
            out["max_count_limit"] = self.max_count_limit
        elif self.type == "conditional":
            out.update(default_child=self.default_child, child_output_mapping=dict(self.child_output_mapping),
                       require_output_mapping=self.require_output_mapping)
        return out


@dataclass(frozen=True)
class Called:
    """One server tool call made since the user last spoke, and what it returned."""

    name: str
    output: str = ""


@dataclass(frozen=True)
class StepPlan:
    """What the next upstream request may offer of the agent's tools, and what it forces.

    `allowed` None: every tool of the agent. `choice` None: the model decides; "required": some tool;
    any other string: that tool by name.
    """

    allowed: frozenset[str] | None = None
    choice: str | None = None

    def tool_choice(self) -> Any:
        """The OpenAI `tool_choice` value, or None."""
        if self.choice is None or self.choice == "required":
            return self.choice
        return {"type": "function", "function": {"name": self.choice}}


FREE = StepPlan()


# --- parsing ---------------------------------------------------------------------------------
def _name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise RuleError(f"`{param}` must be a tool name", param)
    return value


def _names(value: Any, param: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _MAX_NAMES:
        raise RuleError(f"`{param}` must be a list of tool names", param)
    return tuple(dict.fromkeys(_name(item, f"{param}[{i}]") for i, item in enumerate(value)))


def parse_rule(raw: Any, where: str) -> ToolRule:
    if not isinstance(raw, dict):
        raise RuleError(f"`{where}` must be a tool rule object", where)
    given = raw.get("type")
    kind = _ALIASES.get(given, given) if isinstance(given, str) else given
    if kind not in RULE_TYPES:
        raise RuleError(f"`{where}.type` must be one of {', '.join(RULE_TYPES)} (got {raw.get('type')!r})",
                        f"{where}.type")
    template = raw.get("prompt_template")
    if template is not None and not isinstance(template, str):
        raise RuleError(f"`{where}.prompt_template` must be a string", f"{where}.prompt_template")
    rule: dict[str, Any] = {"type": kind, "tool_name": _name(raw.get("tool_name"), f"{where}.tool_name"),
                            "prompt_template": template}
    if kind == "run_first" and raw.get("args") is not None:
        raise RuleError("prefilled `args` on run_first rules are not supported by memproxy", f"{where}.args")
    if kind in ("constrain_child_tools", "parent_last_tool"):
        rule["children"] = _names(raw.get("children"), f"{where}.children")
        if raw.get("child_arg_nodes"):
            raise RuleError("`child_arg_nodes` is not supported by memproxy", f"{where}.child_arg_nodes")
    elif kind == "max_count_per_step":
        limit = raw.get("max_count_limit")
        if type(limit) is not int or not 1 <= limit <= 10_000:
            raise RuleError(f"`{where}.max_count_limit` must be an integer from 1 to 10000",
                            f"{where}.max_count_limit")
        rule["max_count_limit"] = limit
    elif kind == "conditional":
        mapping = raw.get("child_output_mapping")
        if not isinstance(mapping, dict) or len(mapping) > _MAX_NAMES:
            raise RuleError(f"`{where}.child_output_mapping` must be an object of output -> tool name",
                            f"{where}.child_output_mapping")
        rule["child_output_mapping"] = tuple(
            (key, _name(child, f"{where}.child_output_mapping.{key}")) for key, child in mapping.items())
        default = raw.get("default_child")
        rule["default_child"] = None if default is None else _name(default, f"{where}.default_child")
        required = raw.get("require_output_mapping", False)
        if not isinstance(required, bool):
            raise RuleError(f"`{where}.require_output_mapping` must be a boolean", f"{where}.require_output_mapping")
        rule["require_output_mapping"] = required
    return ToolRule(**rule)


def parse_rules(raw: Any, param: str = "tool_rules") -> list[ToolRule]:
    """A ToolRule list from JSON; RuleError names the field at fault."""
    if not isinstance(raw, list) or len(raw) > _MAX_RULES:
        raise RuleError(f"`{param}` must be a list of at most {_MAX_RULES} tool rules", param)
    rules = [parse_rule(item, f"{param}[{i}]") for i, item in enumerate(raw)]
    seen: set[tuple[str, str]] = set()
    out: list[ToolRule] = []
    for rule in rules:  # the same rule twice is one rule (an approval set twice, for example)
        key = (rule.type, rule.tool_name)
        if key in seen and rule.type in ("requires_approval", "run_first", "exit_loop", "continue_loop",
                                         "required_before_exit"):
            continue
        seen.add(key)
        out.append(rule)
    return out


def check_tools(rules: list[ToolRule], tools: Iterable[str], param: str = "tool_rules") -> None:
    """Every tool a rule names must be one of the agent's; no tool both ends and continues the loop."""
    have = set(tools)
    for i, rule in enumerate(rules):
        named = [("tool_name", rule.tool_name), *(("children", n) for n in rule.children),
                 *((f"child_output_mapping.{k}", n) for k, n in rule.child_output_mapping)]
        if rule.default_child:
            named.append(("default_child", rule.default_child))
        for where, name in named:
            if name not in have:
                raise RuleError(f"`{param}[{i}]` names {name!r}, which is not one of the agent's tools; attach it "
                                "first", f"{param}[{i}].{where}")
    ending = {r.tool_name for r in rules if r.type == "exit_loop"}
    for i, rule in enumerate(rules):
        if rule.type == "continue_loop" and rule.tool_name in ending:
            raise RuleError(f"{rule.tool_name!r} cannot both end (exit_loop) and continue (continue_loop) the loop",
                            f"{param}[{i}].type")


def rules_json(rules: list[ToolRule]) -> list[dict[str, Any]]:
    return [rule.json() for rule in rules]


def load(stored: list[dict[str, Any]]) -> list[ToolRule]:
    """Rules as stored (already validated when written); an unreadable one is skipped, not fatal."""
    out: list[ToolRule] = []
    for i, raw in enumerate(stored):
        try:
            out.append(parse_rule(raw, f"tool_rules[{i}]"))
        except RuleError:
            continue
    return out


def without_tool(rules: list[ToolRule], name: str) -> list[ToolRule]:
    """The rules left when a tool leaves the agent: every rule that mentions it goes with it."""
    return [rule for rule in rules if name not in rule.names()]


def set_approval(rules: list[ToolRule], name: str, required: bool) -> list[ToolRule]:
    kept = [r for r in rules if not (r.type == "requires_approval" and r.tool_name == name)]
    return [*kept, ToolRule("requires_approval", name)] if required else kept


# --- the loop --------------------------------------------------------------------------------
@dataclass
class Rules:
    """An agent's rules indexed for the loop; `active` is False when no rule shapes the steps."""

    rules: list[ToolRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        by: dict[str, list[ToolRule]] = {}
        for rule in self.rules:
            by.setdefault(rule.type, []).append(rule)
        self.by_type = by
        self.approval = frozenset(r.tool_name for r in by.get("requires_approval", ()))
        self.active = any(kind != "requires_approval" for kind in by)

    def _of(self, kind: str) -> list[ToolRule]:
        return self.by_type.get(kind, [])

    def needs_approval(self, name: str) -> bool:
        return name in self.approval

    def plan(self, tools: Iterable[str], history: list[Called]) -> StepPlan:
        """The tools the next step may offer, and the `tool_choice` it forces."""
        if not self.active:
            return FREE
        allowed = set(tools)
        must_call = False
        if not history and self._of("run_first"):
            allowed &= {r.tool_name for r in self._of("run_first")}
            must_call = True
        elif history:
            last = history[-1]
            for rule in self._of("constrain_child_tools"):
                if rule.tool_name == last.name:
                    allowed &= set(rule.children)
                    must_call = True
            for rule in self._of("conditional"):
                if rule.tool_name == last.name:
                    child = _mapped_child(rule, last.output)
                    if child is not None:
                        allowed &= {child}
                        must_call = True
                    elif rule.require_output_mapping:
                        allowed = set()
        last_name = history[-1].name if history else None
        for rule in self._of("parent_last_tool"):
            if last_name != rule.tool_name:
                allowed -= set(rule.children)
        for rule in self._of("max_count_per_step"):
            if sum(1 for c in history if c.name == rule.tool_name) >= rule.max_count_limit:
                allowed.discard(rule.tool_name)
        allowed_set = frozenset(allowed)
        return StepPlan(allowed_set, _choice(allowed_set) if must_call else None)

    def refusal(self, plan: StepPlan, name: str, history: list[Called]) -> str | None:
        """Why a call the model made may not run now (the model ignored the offer), or None."""
        if plan.allowed is not None and name not in plan.allowed:
            offered = ", ".join(sorted(plan.allowed)) or "none"
            return (f"Error: the agent's tool rules do not allow calling `{name}` now (allowed now: {offered}). "
                    "It was not run.")
        for rule in self._of("max_count_per_step"):
            if rule.tool_name == name and sum(1 for c in history if c.name == name) >= rule.max_count_limit:
                return (f"Error: `{name}` may be called at most {rule.max_count_limit} time(s) per turn; "
                        "it was not run.")
        return None

    def missing(self, history: list[Called]) -> list[str]:
        """Tools that must still be called before the loop may end."""
        done = {c.name for c in history}
        return [r.tool_name for r in self._of("required_before_exit") if r.tool_name not in done]

    def exits(self, calls: list[str], history: list[Called]) -> bool:
        """True when one of this step's calls ends the loop (and nothing required is missing)."""
        terminal = {r.tool_name for r in self._of("exit_loop")}
        return bool(terminal.intersection(calls)) and not self.missing(history)

    def before_exit(self, tools: Iterable[str], history: list[Called]) -> StepPlan | None:
        """The model answered without a tool call: a plan forcing a missing required tool, or None to stop."""
        missing = frozenset(self.missing(history)) & frozenset(tools)
        if not missing:
            return None
        return StepPlan(missing, _choice(missing))


def _choice(allowed: frozenset[str]) -> str | None:
    if not allowed:
        return None
    return next(iter(allowed)) if len(allowed) == 1 else "required"


def _mapped_child(rule: ToolRule, output: str) -> str | None:
    """The child for a tool's output: keys match the output as text, ignoring case for true/false/null and
    comparing numbers by value ("1.0" matches "1"); no match is the default child (None: no constraint)."""
    value = _normal(output)
    for key, child in rule.child_output_mapping:
        if _normal(key) == value:
            return child
    return rule.default_child


def _normal(text: str) -> Any:
    text = text.strip()
    if text.lower() in ("true", "false", "null", "none"):
        return ("word", text.lower().replace("none", "null"))
    try:
        return ("number", float(text))
    except ValueError:
        return ("text", text)
