"""tools/rules.py on its own: parsing, validation against the agent's tools, and the per-step plan."""

from __future__ import annotations

from typing import Any

import pytest

from tools.rules import Called, RuleError, Rules, StepPlan, check_tools, parse_rules, rules_json, set_approval, \
    without_tool

TOOLS = ["search", "fetch", "summarize", "finish", "memory_insert"]


def _rules(*raw: dict[str, Any]) -> Rules:
    rules = parse_rules(list(raw))
    check_tools(rules, TOOLS)
    return Rules(rules)


def _calls(*names: str, output: str = "ok") -> list[Called]:
    return [Called(n, output) for n in names]


def test_no_rules_plan_nothing_and_stay_inactive() -> None:
    rules = Rules([])
    assert not rules.active and rules.plan(TOOLS, []) == StepPlan()
    assert rules.before_exit(TOOLS, []) is None and not rules.exits(["finish"], [])


def test_run_first_forces_its_tool_on_the_first_step_only() -> None:
    rules = _rules({"type": "run_first", "tool_name": "search"})
    first = rules.plan(TOOLS, [])
    assert first.allowed == {"search"} and first.tool_choice() == {"type": "function", "function": {"name": "search"}}
    assert rules.plan(TOOLS, _calls("search")) == StepPlan(frozenset(TOOLS), None)


def test_two_run_first_tools_require_one_of_them() -> None:
    rules = _rules({"type": "run_first", "tool_name": "search"}, {"type": "run_first", "tool_name": "fetch"})
    assert rules.plan(TOOLS, []) == StepPlan(frozenset({"search", "fetch"}), "required")


def test_child_rule_constrains_the_next_step_after_its_parent() -> None:
    for kind in ("constrain_child_tools", "child"):
        rules = _rules({"type": kind, "tool_name": "search", "children": ["fetch", "summarize"]})
        assert rules.plan(TOOLS, _calls("search")) == StepPlan(frozenset({"fetch", "summarize"}), "required")
        assert rules.plan(TOOLS, _calls("search", "fetch")).allowed == frozenset(TOOLS)
        assert rules.refusal(rules.plan(TOOLS, _calls("search")), "finish", _calls("search")) is not None
        assert rules.refusal(rules.plan(TOOLS, _calls("search")), "fetch", _calls("search")) is None


def test_max_count_removes_the_tool_once_used_up_and_refuses_extra_parallel_calls() -> None:
    rules = _rules({"type": "max_count_per_step", "tool_name": "search", "max_count_limit": 2})
    assert "search" in rules.plan(TOOLS, _calls("search")).allowed
    plan = rules.plan(TOOLS, _calls("search", "search"))
    assert "search" not in plan.allowed and plan.choice is None
    # Two calls in one response when one is left: the second is refused.
    assert rules.refusal(rules.plan(TOOLS, _calls("search")), "search", _calls("search", "search")) is not None


def test_exit_loop_ends_unless_a_required_tool_is_missing() -> None:
    rules = _rules({"type": "exit_loop", "tool_name": "finish"})
    assert rules.exits(["search", "finish"], _calls("search", "finish"))
    assert not rules.exits(["search"], _calls("search"))
    both = _rules({"type": "exit_loop", "tool_name": "finish"}, {"type": "required_before_exit", "tool_name": "summarize"})
    assert not both.exits(["finish"], _calls("finish"))
    assert both.exits(["finish"], _calls("summarize", "finish"))


def test_required_before_exit_forces_the_missing_tools() -> None:
    rules = _rules({"type": "required_before_exit", "tool_name": "summarize"})
    assert rules.plan(TOOLS, []) == StepPlan(frozenset(TOOLS), None)  # never forced before the model tries to stop
    assert rules.before_exit(TOOLS, _calls("search")) == StepPlan(frozenset({"summarize"}), "summarize")
    assert rules.before_exit(TOOLS, _calls("summarize")) is None
    two = _rules({"type": "required_before_exit", "tool_name": "summarize"},
                 {"type": "required_before_exit", "tool_name": "fetch"})
    assert two.before_exit(TOOLS, []) == StepPlan(frozenset({"summarize", "fetch"}), "required")


@pytest.mark.parametrize(("output", "child"), [
    ("true", "fetch"), ("True", "fetch"), ("false", "summarize"), ("3", "finish"), ("3.0", "finish"),
    ("something else", "search"),
])
def test_conditional_picks_the_child_by_the_previous_output(output: str, child: str) -> None:
    rules = _rules({"type": "conditional", "tool_name": "search", "default_child": "search",
                    "child_output_mapping": {"true": "fetch", "false": "summarize", "3": "finish"}})
    assert rules.plan(TOOLS, _calls("search", output=output)) == StepPlan(frozenset({child}), child)


def test_conditional_without_a_match() -> None:
    free = _rules({"type": "conditional", "tool_name": "search", "child_output_mapping": {"yes": "fetch"}})
    assert free.plan(TOOLS, _calls("search", output="no")) == StepPlan(frozenset(TOOLS), None)
    strict = _rules({"type": "conditional", "tool_name": "search", "child_output_mapping": {"yes": "fetch"},
                     "require_output_mapping": True})
    assert strict.plan(TOOLS, _calls("search", output="no")) == StepPlan(frozenset(), None)


def test_parent_last_tool_hides_children_unless_the_parent_just_ran() -> None:
    rules = _rules({"type": "parent_last_tool", "tool_name": "search", "children": ["fetch"]})
    assert "fetch" not in rules.plan(TOOLS, []).allowed
    assert "fetch" in rules.plan(TOOLS, _calls("search")).allowed
    assert "fetch" not in rules.plan(TOOLS, _calls("search", "summarize")).allowed


def test_continue_loop_is_accepted_and_never_ends_or_forces() -> None:
    rules = _rules({"type": "continue_loop", "tool_name": "search"})
    assert not rules.exits(["search"], _calls("search")) and rules.plan(TOOLS, _calls("search")).choice is None


def test_approval_rules_do_not_shape_steps() -> None:
    rules = _rules({"type": "requires_approval", "tool_name": "fetch"})
    assert rules.needs_approval("fetch") and not rules.needs_approval("search") and not rules.active


@pytest.mark.parametrize(("raw", "param"), [
    ({"type": "teleport", "tool_name": "search"}, "tool_rules[0].type"),
    ({"tool_name": "search"}, "tool_rules[0].type"),
    ({"type": "exit_loop"}, "tool_rules[0].tool_name"),
    ({"type": "exit_loop", "tool_name": 7}, "tool_rules[0].tool_name"),
    ({"type": "constrain_child_tools", "tool_name": "search"}, "tool_rules[0].children"),
    ({"type": "constrain_child_tools", "tool_name": "search", "children": ["fetch", 1]}, "tool_rules[0].children[1]"),
    ({"type": "max_count_per_step", "tool_name": "search", "max_count_limit": 0}, "tool_rules[0].max_count_limit"),
    ({"type": "max_count_per_step", "tool_name": "search", "max_count_limit": True}, "tool_rules[0].max_count_limit"),
    ({"type": "conditional", "tool_name": "search"}, "tool_rules[0].child_output_mapping"),
    ({"type": "conditional", "tool_name": "search", "child_output_mapping": {}, "require_output_mapping": "yes"},
     "tool_rules[0].require_output_mapping"),
    ({"type": "run_first", "tool_name": "search", "args": {"q": "x"}}, "tool_rules[0].args"),
    ("exit_loop", "tool_rules[0]"),
])
def test_malformed_rules_name_the_field(raw: Any, param: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules([raw])
    assert caught.value.param == param


@pytest.mark.parametrize(("raw", "param"), [
    ({"type": "exit_loop", "tool_name": "web_search"}, "tool_rules[1].tool_name"),
    ({"type": "constrain_child_tools", "tool_name": "search", "children": ["fetch", "nope"]}, "tool_rules[1].children"),
    ({"type": "conditional", "tool_name": "search", "child_output_mapping": {"a": "nope"}},
     "tool_rules[1].child_output_mapping.a"),
    ({"type": "conditional", "tool_name": "search", "child_output_mapping": {}, "default_child": "nope"},
     "tool_rules[1].default_child"),
    ({"type": "continue_loop", "tool_name": "finish"}, "tool_rules[1].type"),
])
def test_rules_naming_tools_the_agent_lacks_or_contradicting_are_refused(raw: dict[str, Any], param: str) -> None:
    rules = parse_rules([{"type": "exit_loop", "tool_name": "finish"}, raw])
    with pytest.raises(RuleError) as caught:
        check_tools(rules, TOOLS)
    assert caught.value.param == param


def test_round_trip_dedupe_detach_and_approval_toggles() -> None:
    raw = [{"type": "child", "tool_name": "search", "children": ["fetch"]},
           {"type": "requires_approval", "tool_name": "fetch"}, {"type": "requires_approval", "tool_name": "fetch"},
           {"type": "max_count_per_step", "tool_name": "search", "max_count_limit": 3}]
    rules = parse_rules(raw)
    assert rules_json(rules) == [
        {"tool_name": "search", "type": "constrain_child_tools", "prompt_template": None, "children": ["fetch"]},
        {"tool_name": "fetch", "type": "requires_approval", "prompt_template": None},
        {"tool_name": "search", "type": "max_count_per_step", "prompt_template": None, "max_count_limit": 3}]
    assert parse_rules(rules_json(rules)) == rules
    assert [r.type for r in without_tool(rules, "fetch")] == ["max_count_per_step"]
    assert Rules(set_approval(rules, "search", True)).needs_approval("search")
    assert not Rules(set_approval(rules, "fetch", False)).needs_approval("fetch")
