"""Letta's tool rules in real turns: what each step offers and forces upstream, and when the loop stops."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest

from helpers import agent_calls, create_agent, sdk, sim_headers
from tools.registry import ServerTool, ToolContext

RAN: list[str] = []  # the tools that really ran, in order


def _tool(name: str) -> ServerTool:
    async def run(ctx: ToolContext, args: dict[str, Any]) -> str:
        RAN.append(name)
        return str(args.get("answer", f"{name} done"))

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    return ServerTool(name, f"The {name} tool.", schema, run)


NAMES = ("search", "fetch", "summarize", "finish", "check")


@pytest.fixture(autouse=True)
def rule_tools(server) -> Iterator[None]:
    for name in NAMES:
        server.rt.registry.add(_tool(name))
    RAN.clear()
    yield
    for name in NAMES:
        server.rt.registry.remove(name)


def _agent(server, *rules: dict[str, Any], tools: tuple[str, ...] = ("search", "fetch", "summarize")) -> str:
    return create_agent(server.base_url, tools=list(tools), tool_rules=list(rules))


def _call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": args}]}


def _chat(server, agent: str, script: list[Any], **extra: Any) -> Any:
    return sdk(server.base_url).chat.completions.create(
        model=agent, messages=[{"role": "user", "content": "go"}], extra_headers=sim_headers(script=script), **extra)


def _offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools") or []]


def _forced(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def test_run_first_forces_its_tool_on_the_first_step(server, sim_requests) -> None:
    agent = _agent(server, {"type": "run_first", "tool_name": "search"})
    out = _chat(server, agent, [_call("search"), "Found it."])
    assert out.choices[0].message.content == "Found it." and RAN == ["search"]
    first, second = agent_calls(sim_requests)
    assert _offered(first) == ["search"] and first["tool_choice"] == _forced("search")
    assert "tool_choice" not in second and {"search", "fetch", "memory_insert"} <= set(_offered(second))


def test_client_tools_stay_offered_when_a_rule_forces_a_server_tool(server, sim_requests) -> None:
    agent = _agent(server, {"type": "run_first", "tool_name": "search"})
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
    _chat(server, agent, [_call("search"), "Done."], tools=[clock], tool_choice="none")
    first = agent_calls(sim_requests)[0]
    assert _offered(first) == ["search", "get_time"] and first["tool_choice"] == _forced("search")


def test_exit_loop_ends_the_turn_after_its_tool(server, sim_requests) -> None:
    agent = _agent(server, {"type": "exit_loop", "tool_name": "finish"}, tools=("search", "finish"))
    script = [_call("search"), {"reply": "All set.", "content_then_tool_calls": True,
                                "tool_calls": [{"name": "finish", "arguments": {}}]}, "never asked"]
    out = _chat(server, agent, script)
    assert out.choices[0].finish_reason == "stop" and out.choices[0].message.content == "All set."
    assert out.choices[0].message.tool_calls is None
    assert RAN == ["search", "finish"] and len(agent_calls(sim_requests)) == 2


def test_continue_loop_keeps_going_after_its_tool(server, sim_requests) -> None:
    agent = _agent(server, {"type": "continue_loop", "tool_name": "search"})
    out = _chat(server, agent, [_call("search"), "Next."])
    assert out.choices[0].message.content == "Next." and len(agent_calls(sim_requests)) == 2


def test_child_rule_offers_only_the_children_next_and_refuses_others(server, sim_requests) -> None:
    agent = _agent(server, {"type": "constrain_child_tools", "tool_name": "search", "children": ["fetch"]})
    _chat(server, agent, [_call("search"), _call("fetch"), "Done."])
    calls = agent_calls(sim_requests)
    assert _offered(calls[1]) == ["fetch"] and calls[1]["tool_choice"] == _forced("fetch")
    assert "tool_choice" not in calls[2] and RAN == ["search", "fetch"]
    # A model that ignores the offer: the call is not run, and the model reads why.
    RAN.clear()
    _chat(server, agent, [_call("search"), _call("summarize"), "Sorry."])
    assert RAN == ["search"]
    refusal = agent_calls(sim_requests)[-1]["messages"][-1]
    assert refusal["role"] == "tool" and "do not allow calling `summarize` now (allowed now: fetch)" in refusal["content"]


def test_max_count_per_step_stops_offering_a_used_up_tool(server, sim_requests) -> None:
    agent = _agent(server, {"type": "max_count_per_step", "tool_name": "search", "max_count_limit": 1})
    _chat(server, agent, [_call("search"), _call("search"), "Done."])
    calls = agent_calls(sim_requests)
    assert "search" in _offered(calls[0]) and "search" not in _offered(calls[1]) and RAN == ["search"]
    assert "not run" in calls[2]["messages"][-1]["content"]
    RAN.clear()  # the count is per turn: the next turn may call it again
    _chat(server, agent, [_call("search"), "Done."])
    assert RAN == ["search"]


def test_required_before_exit_forces_the_missing_tool_before_the_answer(server, sim_requests) -> None:
    agent = _agent(server, {"type": "required_before_exit", "tool_name": "summarize"})
    out = _chat(server, agent, ["Done already. ", _call("summarize"), "Now done."])
    assert out.choices[0].message.content == "Done already. Now done." and RAN == ["summarize"]
    calls = agent_calls(sim_requests)
    assert len(calls) == 3 and "tool_choice" not in calls[0]
    assert _offered(calls[1]) == ["summarize"] and calls[1]["tool_choice"] == _forced("summarize")


def test_required_before_exit_is_bounded_by_max_steps(server, sim_requests) -> None:
    agent = _agent(server, {"type": "required_before_exit", "tool_name": "summarize"})
    response = httpx.post(f"{server.base_url}/v1/agents/{agent}/messages", timeout=30,
                          headers=sim_headers(script=["a", "b", "c", "d"]),
                          json={"messages": [{"role": "user", "content": "go"}], "max_steps": 3})
    assert response.status_code == 200, response.text
    assert response.json()["stop_reason"]["stop_reason"] == "max_steps" and len(agent_calls(sim_requests)) == 3


def test_conditional_picks_the_next_tool_from_the_previous_output(server, sim_requests) -> None:
    agent = _agent(server, {"type": "conditional", "tool_name": "check", "default_child": "search",
                            "child_output_mapping": {"yes": "fetch", "no": "summarize"}},
                   tools=("check", "search", "fetch", "summarize"))
    _chat(server, agent, [_call("check", answer="no"), _call("summarize"), "Done."])
    _chat(server, agent, [_call("check", answer="maybe"), _call("search"), "Done."])
    calls = agent_calls(sim_requests)
    assert _offered(calls[1]) == ["summarize"] and calls[1]["tool_choice"] == _forced("summarize")
    assert _offered(calls[4]) == ["search"] and calls[4]["tool_choice"] == _forced("search")
    assert RAN == ["check", "summarize", "check", "search"]


def test_a_rule_survives_the_stream_path_and_the_upstream_failing(server, sim_requests) -> None:
    agent = _agent(server, {"type": "run_first", "tool_name": "search"})
    client = sdk(server.base_url)
    with pytest.raises(Exception):  # the upstream fails on the forced step: an error, not a hang
        client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "go"}],
                                       extra_headers=sim_headers(fail_status=500))
    assert RAN == []
    stream = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "again"}],
                                            stream=True, extra_headers=sim_headers(script=[_call("search"), "Ok."]))
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Ok." and RAN == ["search"]
    assert agent_calls(sim_requests)[-2]["tool_choice"] == _forced("search")


def test_an_approved_exit_loop_tool_ends_the_turn_once_it_ran(server, sim_requests) -> None:
    agent = _agent(server, {"type": "exit_loop", "tool_name": "finish"}, {"type": "requires_approval", "tool_name": "finish"},
                   tools=("search", "finish"))
    first = _chat(server, agent, [_call("finish")])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and RAN == []
    answer = [{"role": "user", "content": "go"}, first.choices[0].message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": '{"approve": true}'}]
    out = sdk(server.base_url).chat.completions.create(model=agent, messages=answer,
                                                       extra_headers=sim_headers(script=[_call("finish"), "never"]))
    assert out.choices[0].finish_reason == "stop" and RAN == ["finish"] and len(agent_calls(sim_requests)) == 1
