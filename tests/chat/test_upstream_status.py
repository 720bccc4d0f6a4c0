"""What a client hears when the upstream fails: the same status on the agent route and on passthrough,
streamed or not. Upstream 503 -> 503, upstream 504 and every upstream timeout -> 504, other upstream
failures -> 502; always in the OpenAI error shape (an error event then [DONE] once a stream has begun)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from helpers import create_agent, raw_events, sim_headers
from proxy.http1 import ConnectFailed, ConnectTimeout
from proxy.upstream import UpstreamError, _unreachable

ERROR_KEYS = {"message", "type", "param", "code"}
STALL = {"stall_ms": 3000}  # far past the server's 0.5 s upstream timeout

# (case id, sim failure, status the client must get)
BEFORE_THE_ANSWER = [
    ("503", {"fail_status": 503}, 503),
    ("504", {"fail_status": 504}, 504),
    ("stall", STALL, 504),
    ("429", {"fail_status": 429}, 429),
]


@pytest.fixture
def slow_upstream_server(make_server: Any) -> Any:
    return make_server(upstream_timeout=0.5)


def _post(base_url: str, model: str, stream: bool, failure: dict[str, Any]) -> httpx.Response:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}
    return httpx.post(base_url + "/v1/chat/completions", json=body, headers=sim_headers(**failure), timeout=30)


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS and error["message"]
    return error


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_agent_route_status_before_the_answer(slow_upstream_server: Any, stream: bool) -> None:
    base_url = slow_upstream_server.base_url
    agent = create_agent(base_url)
    for case, failure, status in BEFORE_THE_ANSWER:
        error = _error(_post(base_url, agent, stream, failure), status)
        if case == "stall":
            assert error["code"] == "upstream_timeout" and error["type"] == "timeout_error"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_passthrough_status_before_the_answer(slow_upstream_server: Any, stream: bool) -> None:
    base_url = slow_upstream_server.base_url
    for case, failure, status in BEFORE_THE_ANSWER:
        error = _error(_post(base_url, "gpt-4o-mini", stream, failure), status)
        if case == "stall":
            assert error["code"] == "upstream_timeout" and error["type"] == "timeout_error"


def test_agent_route_maps_other_upstream_failures_to_502(slow_upstream_server: Any) -> None:
    agent = create_agent(slow_upstream_server.base_url)
    assert _error(_post(slow_upstream_server.base_url, agent, False, {"fail_status": 500}), 502)["code"]


@pytest.mark.parametrize("failure,status,code", [
    ({"fail_after_chunks": 1}, 502, "upstream_stream_cut"),
    ({"stall_after_chunks": 1, **STALL}, 504, "upstream_timeout"),
], ids=["reset", "stall"])
def test_passthrough_json_body_failing_midway_is_a_gateway_error(slow_upstream_server: Any,
                                                                 failure: dict[str, Any], status: int,
                                                                 code: str) -> None:
    error = _error(_post(slow_upstream_server.base_url, "gpt-4o-mini", False, failure), status)
    assert error["code"] == code


@pytest.mark.parametrize("route", ["agent", "passthrough"])
def test_stall_mid_stream_is_an_in_band_timeout(slow_upstream_server: Any, route: str) -> None:
    base_url = slow_upstream_server.base_url
    model = create_agent(base_url) if route == "agent" else "gpt-4o-mini"
    response = _post(base_url, model, True, {"stall_after_chunks": 3, "reply_tokens": 20, **STALL})
    assert response.status_code == 200
    events, _ = raw_events(response)
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert set(error) == ERROR_KEYS
    assert error["code"] == "upstream_timeout" and error["type"] == "timeout_error"
    assert any(e.get("choices") for e in events[:-2])  # it did stream before stalling


def test_agent_route_json_turn_stalling_midway_is_504(slow_upstream_server: Any) -> None:
    agent = create_agent(slow_upstream_server.base_url)
    failure = {"stall_after_chunks": 3, "reply_tokens": 20, **STALL}
    assert _error(_post(slow_upstream_server.base_url, agent, False, failure), 504)["code"] == "upstream_timeout"


def test_connect_timeout_is_504_and_refusal_502() -> None:
    timed_out = _unreachable(ConnectTimeout("connecting to the upstream timed out"))
    assert (timed_out.status, timed_out.client_status) == (504, 504)
    assert "timed out" in timed_out.message
    refused = _unreachable(ConnectFailed("could not connect to the upstream: Connection refused"))
    assert refused.client_status == 502 and "Connection refused" in refused.message


@pytest.mark.parametrize("status,expected", [(400, 400), (429, 429), (500, 502), (502, 502), (503, 503),
                                             (504, 504)])
def test_client_status(status: int, expected: int) -> None:
    assert UpstreamError(status, "x").client_status == expected
