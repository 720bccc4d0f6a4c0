"""Custom tools in agent turns: created over HTTP, called by the (scripted) model, run in the sandbox."""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx
import pytest

from helpers import agent_calls, create_agent, sdk, sim_headers
from tools.registry import ServerTool, ToolContext

FORECAST = '''
def forecast(city: str, days: int = 1) -> str:
    """The weather in a city.

    Args:
        city: Which city.
        days: Days ahead.
    """
    import os
    key = os.environ.get("WEATHER_API_KEY", "")
    return f"{city}: sunny for {days} day(s), key ending {key[-4:]}"
'''
LEAKY = '''
def leaky() -> str:
    """Fails with its key in the message."""
    import os
    raise RuntimeError("upstream refused key " + os.environ["WEATHER_API_KEY"])
'''
SPIN = '''
def spin() -> str:
    """Never returns."""
    while True:
        pass
'''
SECRET = "sk-weather-abcdefghijklmnop-9876"


def _tool(base_url: str, source: str) -> dict[str, Any]:
    response = httpx.post(f"{base_url}/v1/tools/", json={"source_code": source}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _history(base_url: str, agent: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()


def _chat(base_url: str, agent: str, script: list[dict[str, Any]], text: str = "go") -> Any:
    return sdk(base_url).chat.completions.create(model=agent, messages=[{"role": "user", "content": text}],
                                                 extra_headers=sim_headers(script=script))


def test_a_custom_tool_is_created_attached_and_called_by_the_model(server, sim_requests) -> None:
    tool = _tool(server.base_url, FORECAST)
    agent = create_agent(server.base_url, tool_exec_environment_variables={"WEATHER_API_KEY": SECRET})
    attached = httpx.patch(f"{server.base_url}/v1/agents/{agent}/tools/attach/{tool['id']}").json()
    assert "forecast" in [t["name"] for t in attached["tools"]]

    script = [{"tool_calls": [{"name": "forecast", "arguments": {"city": "Lisbon", "days": 2}}]},
              {"reply": "Sunny in Lisbon."}]
    out = _chat(server.base_url, agent, script, "weather?")
    assert out.choices[0].message.content == "Sunny in Lisbon." and out.choices[0].message.tool_calls is None
    calls = agent_calls(sim_requests)
    assert "forecast" in [t["function"]["name"] for t in calls[0]["tools"]]
    result = calls[-1]["messages"][-1]
    assert result["role"] == "tool" and result["content"] == "Lisbon: sunny for 2 day(s), key ending 9876"
    returns = [m for m in _history(server.base_url, agent) if m["message_type"] == "tool_return_message"]
    assert [(r["name"], r["tool_return"], r["status"]) for r in returns] == [
        ("forecast", "Lisbon: sunny for 2 day(s), key ending 9876", "success")]


def test_a_failing_custom_tool_is_a_tool_error_with_the_secret_kept_out_of_logs(
        server, sim_requests, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tool = _tool(server.base_url, LEAKY)
    agent = create_agent(server.base_url, tools=[tool["name"]], tool_exec_environment_variables={"WEATHER_API_KEY": SECRET})
    out = _chat(server.base_url, agent, [{"tool_calls": [{"name": "leaky", "arguments": {}}]}, {"reply": "Sorry."}])
    assert out.choices[0].message.content == "Sorry."
    result = agent_calls(sim_requests)[-1]["messages"][-1]["content"]
    assert result == "Error: the tool `leaky` failed: RuntimeError: upstream refused key [redacted]"
    assert "custom tool leaky raised" in caplog.text and 'line 5, in leaky' in caplog.text
    assert SECRET not in caplog.text and SECRET[-8:] not in caplog.text


def test_arguments_that_break_the_schema_are_a_tool_error_the_model_reads(server, sim_requests) -> None:
    tool = _tool(server.base_url, FORECAST.replace("forecast(", "forecast_typed("))
    agent = create_agent(server.base_url, tools=[tool["name"]])
    script = [{"tool_calls": [{"name": "forecast_typed", "arguments": {"city": "Oslo", "days": "two"}},
                              {"name": "memory_insert", "arguments": {"label": "human"}}]},
              {"reply": "Let me retry."}]
    assert _chat(server.base_url, agent, script).choices[0].message.content == "Let me retry."
    messages = agent_calls(sim_requests)[-1]["messages"]
    assert messages[-2]["content"].startswith("Error: bad arguments for `forecast_typed`: days: 'two' is not of type")
    assert messages[-1]["content"].startswith("Error: bad arguments for `memory_insert`: 'new_str' is a required")


async def _explode(ctx: ToolContext, args: dict[str, Any]) -> str:
    raise RuntimeError("a bug in a server tool")


def test_a_server_tool_that_raises_is_a_tool_error_and_the_turn_completes(
        server, sim_requests, caplog: pytest.LogCaptureFixture) -> None:
    server.rt.registry.add(ServerTool("explode", "Always raises.", {"type": "object", "properties": {}}, _explode))
    try:
        agent = create_agent(server.base_url, tools=["explode"])
        script = [{"reply": "Let me check. ", "tool_calls": [{"name": "explode", "arguments": {}}]},
                  {"reply": "That failed."}]
        out = _chat(server.base_url, agent, script)
    finally:
        server.rt.registry.remove("explode")
    assert out.choices[0].finish_reason == "stop" and out.choices[0].message.content.endswith("That failed.")
    result = agent_calls(sim_requests)[-1]["messages"][-1]["content"]
    assert result == "Error: the tool `explode` failed: RuntimeError: a bug in a server tool"
    assert "server tool explode raised" in caplog.text and "Traceback" in caplog.text
    runs = httpx.get(f"{server.base_url}/v1/runs/", params={"agent_id": agent}).json()
    assert [r["status"] for r in runs] == ["completed"]


def test_a_looping_tool_is_stopped_and_other_turns_go_on(make_server, sim_requests) -> None:
    srv = make_server(tool_timeout=3)
    tool = _tool(srv.base_url, SPIN)
    stuck = create_agent(srv.base_url, tools=[tool["name"]])
    other = create_agent(srv.base_url)
    outcome: dict[str, Any] = {}

    def run_stuck() -> None:
        outcome["reply"] = _chat(srv.base_url, stuck, [{"tool_calls": [{"name": "spin", "arguments": {}}]},
                                                       {"reply": "It hung."}])

    thread = threading.Thread(target=run_stuck)
    thread.start()
    try:
        # Meanwhile the server answers other agents.
        assert _chat(srv.base_url, other, [{"reply": "still here"}]).choices[0].message.content == "still here"
    finally:
        thread.join(timeout=60)
    assert outcome["reply"].choices[0].message.content == "It hung."
    results = [m for m in _history(srv.base_url, stuck) if m["message_type"] == "tool_return_message"]
    assert results[0]["tool_return"] == "Error: the tool `spin` timed out after 3 seconds and was stopped"
    assert results[0]["status"] == "error"


def test_custom_tools_and_tool_variables_survive_a_restart(make_server, sim_requests) -> None:
    srv = make_server()
    tool = _tool(srv.base_url, FORECAST.replace("forecast(", "forecast_kept("))
    agent = create_agent(srv.base_url, tools=[tool["name"]], secrets={"WEATHER_API_KEY": SECRET})
    data_dir = srv.settings.data_dir
    srv.stop()
    again = make_server(data_dir=data_dir)
    assert httpx.get(f"{again.base_url}/v1/tools/{tool['id']}").json() == tool
    script = [{"tool_calls": [{"name": "forecast_kept", "arguments": {"city": "Porto"}}]}, {"reply": "ok"}]
    assert _chat(again.base_url, agent, script).choices[0].message.content == "ok"
    assert agent_calls(sim_requests)[-1]["messages"][-1]["content"] == "Porto: sunny for 1 day(s), key ending 9876"
