"""The Tools API: custom tools created from source, changed, attached, persisted; agents name only real tools."""

from __future__ import annotations

from typing import Any, Callable

import httpx

from tools.registry import BASE_TOOLS

WEATHER = '''
def get_weather(city: str, days: int = 1) -> str:
    """Get the weather forecast for a city.

    Args:
        city: The city to look up.
        days: How many days ahead.
    """
    return f"{city}: sunny for {days} day(s)"
'''


def _make(http: httpx.Client, source: str = WEATHER, **extra: Any) -> dict[str, Any]:
    response = http.post("/v1/tools/", json={"source_code": source, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def _delete(http: httpx.Client, tool: dict[str, Any]) -> None:
    assert http.delete(f"/v1/tools/{tool['id']}").status_code == 200


def test_a_tool_created_from_source_gets_its_schema_from_the_signature(http: httpx.Client) -> None:
    tool = _make(http, tags=["weather"])
    try:
        assert tool["id"].startswith("tool-") and tool["name"] == "get_weather"
        assert tool["tool_type"] == "custom" and tool["source_code"] == WEATHER and tool["tags"] == ["weather"]
        assert tool["json_schema"] == {
            "name": "get_weather", "description": "Get the weather forecast for a city.",
            "parameters": {"type": "object", "required": ["city"], "properties": {
                "city": {"type": "string", "description": "The city to look up."},
                "days": {"type": "integer", "description": "How many days ahead."}}}}
        assert http.get(f"/v1/tools/{tool['id']}").json() == tool
        listed = http.get("/v1/tools/").json()
        assert tool in listed and set(BASE_TOOLS) <= {t["name"] for t in listed}
        assert http.get("/v1/tools/", params={"name": "get_weather"}).json() == [tool]
    finally:
        _delete(http, tool)
    assert http.get(f"/v1/tools/{tool['id']}").status_code == 404


def test_a_given_json_schema_is_used_and_checked(http: httpx.Client, expect_error: Callable) -> None:
    schema = {"name": "get_weather", "description": "Weather, briefly.",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    tool = _make(http, json_schema=schema)
    try:
        assert tool["json_schema"] == schema and tool["description"] == "Weather, briefly."
    finally:
        _delete(http, tool)
    expect_error(http.post("/v1/tools/", json={"source_code": WEATHER, "json_schema": {**schema, "name": "other"}}),
                 400, "invalid_tool")
    bad = {**schema, "parameters": {"type": "object", "properties": {"city": {"type": "no-such-type"}}}}
    expect_error(http.post("/v1/tools/", json={"source_code": WEATHER, "json_schema": bad}), 400, "invalid_tool")


def test_bad_tools_are_refused_and_nothing_is_kept(http: httpx.Client, expect_error: Callable) -> None:
    before = http.get("/v1/tools/").json()
    for source in ("def f(x):\n    return x\n", "x = 1\n", "def f(:\n", "def a(x: int): pass\ndef b(y: int): pass\n",
                   "async def f(x: int):\n    return x\n", "def f(*args: int):\n    return 1\n"):
        expect_error(http.post("/v1/tools/", json={"source_code": source}), 400, "invalid_tool")
    expect_error(http.post("/v1/tools/", json={}), 422)
    expect_error(http.post("/v1/tools/", json={"source_code": 5}), 422)
    # An unsupported Letta field is refused by name (400), like every body's undeclared fields.
    error = expect_error(http.post("/v1/tools/", json={"source_code": WEATHER, "pip_requirements": [{"name": "x"}]}),
                         400, "unsupported_parameter")
    assert error["param"] == "pip_requirements"
    # A built-in's name is taken, and so is a custom tool's.
    expect_error(http.post("/v1/tools/", json={"source_code": "def memory_insert(x: int):\n    return x\n"}), 409)
    tool = _make(http)
    try:
        expect_error(http.post("/v1/tools/", json={"source_code": WEATHER}), 409)
    finally:
        _delete(http, tool)
    assert http.get("/v1/tools/").json() == before


def test_modify_changes_the_code_but_never_the_name(http: httpx.Client, expect_error: Callable) -> None:
    tool = _make(http)
    try:
        changed = http.patch(f"/v1/tools/{tool['id']}", json={"description": "Forecasts.", "tags": ["a"]}).json()
        assert changed["description"] == "Forecasts." and changed["json_schema"]["description"] == "Forecasts."
        assert changed["tags"] == ["a"] and changed["json_schema"]["parameters"] == tool["json_schema"]["parameters"]
        source = "def get_weather(city: str, metric: bool) -> str:\n    return city\n"
        changed = http.patch(f"/v1/tools/{tool['id']}", json={"source_code": source}).json()
        assert changed["source_code"] == source and changed["json_schema"]["parameters"]["required"] == ["city", "metric"]
        expect_error(http.patch(f"/v1/tools/{tool['id']}", json={"source_code": "def renamed(x: int):\n    return x\n"}),
                     400, "invalid_tool")
        assert http.get(f"/v1/tools/{tool['id']}").json()["source_code"] == source
        builtin = next(t for t in http.get("/v1/tools/").json() if t["name"] == "memory_insert")
        expect_error(http.patch(f"/v1/tools/{builtin['id']}", json={"description": "x"}), 400, "builtin_tool")
        expect_error(http.delete(f"/v1/tools/{builtin['id']}"), 400, "builtin_tool")
        expect_error(http.patch("/v1/tools/tool-00000000-0000-4000-8000-000000000000", json={}), 404)
    finally:
        _delete(http, tool)


def test_agents_attach_and_detach_tools_and_name_only_real_ones(http: httpx.Client, create_agent: Callable,
                                                                 expect_error: Callable) -> None:
    tool = _make(http)
    try:
        agent = create_agent(tools=["get_weather"])
        assert [t["name"] for t in agent["tools"]] == [*BASE_TOOLS, "get_weather"]
        assert agent["tools"][-1]["id"] == tool["id"]
        detached = http.patch(f"/v1/agents/{agent['id']}/tools/detach/{tool['id']}").json()
        assert "get_weather" not in [t["name"] for t in detached["tools"]]
        attached = http.patch(f"/v1/agents/{agent['id']}/tools/attach/{tool['id']}").json()
        assert [t["name"] for t in attached["tools"]][-1] == "get_weather"
        listed = http.get(f"/v1/agents/{agent['id']}/tools").json()
        assert [t["name"] for t in listed] == [*BASE_TOOLS, "get_weather"]
        by_id = http.patch(f"/v1/agents/{agent['id']}", json={"tool_ids": [tool["id"]]}).json()
        assert [t["name"] for t in by_id["tools"]] == ["get_weather"]
        expect_error(http.patch(f"/v1/agents/{agent['id']}/tools/attach/tool-00000000-0000-4000-8000-000000000000"),
                     404)
        # Deleting the tool takes it off the agent.
        _delete(http, tool)
        assert http.get(f"/v1/agents/{agent['id']}").json()["tools"] == []
    finally:
        http.delete(f"/v1/tools/{tool['id']}")
    before = len(http.get("/v1/agents/").json())
    expect_error(http.post("/v1/agents/", json={"tools": ["web_search"]}), 400, "tool_not_found")
    expect_error(http.post("/v1/agents/", json={"tool_ids": ["tool-00000000-0000-4000-8000-000000000000"]}),
                 400, "tool_not_found")
    assert len(http.get("/v1/agents/").json()) == before
    agent = create_agent()
    expect_error(http.patch(f"/v1/agents/{agent['id']}", json={"tools": ["get_weather"]}), 400, "tool_not_found")
    assert [t["name"] for t in http.get(f"/v1/agents/{agent['id']}").json()["tools"]] == list(BASE_TOOLS)


def test_tool_variables_are_masked_and_kept_when_sent_back_masked(server: Any, http: httpx.Client,
                                                                  create_agent: Callable, expect_error: Callable) -> None:
    agent = create_agent(tool_exec_environment_variables={"WEATHER_API_KEY": "sk-weather-0123456789abcd",
                                                          "SHORT": "pin1"})
    shown = {v["key"]: v["value"] for v in agent["tool_exec_environment_variables"]}
    assert shown == {"WEATHER_API_KEY": "sk-...abcd", "SHORT": "****"}
    assert agent["secrets"] == agent["tool_exec_environment_variables"]
    for response in (http.get(f"/v1/agents/{agent['id']}"), http.get("/v1/agents/")):
        assert "0123456789" not in response.text and "pin1" not in response.text
    # Sending back the masked list (as a client that round-trips the state does) keeps the secrets.
    sent_back = [{"key": v["key"], "value": v["value"]} for v in agent["tool_exec_environment_variables"]]
    http.patch(f"/v1/agents/{agent['id']}", json={"secrets": [*sent_back, {"key": "NEW", "value": "v"}]})
    live = _stored_env(server, agent["id"])
    assert live == {"WEATHER_API_KEY": "sk-weather-0123456789abcd", "SHORT": "pin1", "NEW": "v"}
    expect_error(http.patch(f"/v1/agents/{agent['id']}", json={"secrets": {"1BAD": "x"}}), 422)
    expect_error(http.patch(f"/v1/agents/{agent['id']}", json={"secrets": {"PATH": "/tmp"}}), 422)
    expect_error(http.patch(f"/v1/agents/{agent['id']}", json={"secrets": {"K": 5}}), 422)
    assert _stored_env(server, agent["id"]) == live


def _stored_env(server: Any, agent_id: str) -> dict[str, str]:
    agent = server.call(server.rt.store.get_agent(agent_id))
    return dict(agent.tool_env)


def test_upsert_creates_then_changes_the_tool_of_that_name_and_refuses_built_ins(http: httpx.Client,
                                                                                 expect_error: Callable) -> None:
    first = http.put("/v1/tools/", json={"source_code": WEATHER, "tags": ["a"]})
    assert first.status_code == 200, first.text
    tool = first.json()
    try:
        source = WEATHER.replace("sunny", "rainy")
        again = http.put("/v1/tools/", json={"source_code": source, "tags": ["b"]}).json()
        assert (again["id"], again["source_code"], again["tags"]) == (tool["id"], source, ["b"])
        assert [t["id"] for t in http.get("/v1/tools/", params={"name": "get_weather"}).json()] == [tool["id"]]
        before = http.get("/v1/tools/").json()
        expect_error(http.put("/v1/tools/", json={"source_code": "def memory_insert(label: str):\n    return label\n"}),
                     400, "builtin_tool")
        expect_error(http.put("/v1/tools/", json={"source_code": "not python("}), 400, "invalid_tool")
        expect_error(http.put("/v1/tools/", json={"tags": ["no source"]}), 422, "validation_error")
        assert http.get("/v1/tools/").json() == before
        assert http.get(f"/v1/tools/{tool['id']}").json()["source_code"] == source
    finally:
        _delete(http, tool)
