"""Failure injection: error statuses, cut streams, stalls, fail-then-succeed, context limits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

from proxy.sim import SimConfig, run_sim_in_thread


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_fail_status_500(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="m", messages=user("x"), extra_headers={"X-Sim-Fail-Status": "500"})
    assert info.value.status_code == 500
    assert set(info.value.body) == {"message", "type", "param", "code"}


def test_fail_status_429_with_retry_after(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(
            model="m", messages=user("x"), stream=True, extra_body={"sim": {"fail_status": 429}}
        )
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.body["code"] == "rate_limit_exceeded"


def test_fail_after_chunks_cuts_the_stream(client: openai.OpenAI) -> None:
    received = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        stream = client.chat.completions.create(
            model="m", messages=user("x"), stream=True, extra_headers={"X-Sim-Fail-After-Chunks": "3"}
        )
        for chunk in stream:
            received.append(chunk)
    assert 0 < len(received) <= 3
    assert all(c.choices[0].finish_reason is None for c in received)


def test_fail_after_chunks_raw(http: httpx.Client) -> None:
    body = {"model": "m", "messages": user("x"), "stream": True, "sim": {"fail_after_chunks": 2, "token_delay_ms": 1}}
    data = b""
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", "/v1/chat/completions", json=body) as resp:
            for part in resp.iter_bytes():
                data += part
    assert data.count(b"data: ") == 2
    assert b"[DONE]" not in data


def test_fail_times_then_success(sim_url: str, http: httpx.Client) -> None:
    key = uuid.uuid4().hex
    headers = {"X-Sim-Fail-Status": "500", "X-Sim-Fail-Times": "2", "X-Sim-Key": key}
    statuses = [
        http.post("/v1/chat/completions", json={"model": "m", "messages": user("x")}, headers=headers).status_code
        for _ in range(4)
    ]
    assert statuses == [500, 500, 200, 200]


def test_fail_times_with_sdk_retries(sim_url: str, http: httpx.Client) -> None:
    key = uuid.uuid4().hex
    with openai.OpenAI(base_url=sim_url, api_key="x", max_retries=3) as sdk:
        resp = sdk.chat.completions.create(
            model="m",
            messages=user("retry me"),
            extra_body={"sim": {"fail_status": 429, "fail_times": 2, "key": key, "retry_after": 0.01}},
        )
    assert resp.choices[0].message.content.startswith("Echo: retry me")
    attempts = [r for r in http.get("/sim/requests").json() if (r.get("sim") or {}).get("key") == key]
    assert len(attempts) == 3


def test_fail_times_counts_per_key(http: httpx.Client) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    body = {"model": "m", "messages": user("x")}
    for key in (first, second):
        sim = {"fail_status": 503, "fail_times": 1, "key": key}
        assert http.post("/v1/chat/completions", json={**body, "sim": sim}).status_code == 503
    assert http.post("/v1/chat/completions", json={**body, "sim": {**sim, "key": first}}).status_code == 200


def test_stall_delays_first_byte(http: httpx.Client) -> None:
    start = time.perf_counter()
    body = {"model": "m", "messages": user("x"), "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body, headers={"X-Sim-Stall-Ms": "150"}) as resp:
        assert time.perf_counter() - start >= 0.15
        assert resp.status_code == 200
        resp.read()


def test_stall_triggers_client_timeout(sim_url: str) -> None:
    with openai.OpenAI(base_url=sim_url, api_key="x", max_retries=0, timeout=0.1) as sdk:
        with pytest.raises(openai.APITimeoutError):
            sdk.chat.completions.create(model="m", messages=user("x"), extra_body={"sim": {"stall_ms": 400}})


def test_stall_after_chunks_pauses_a_stream_midway(sim_url: str) -> None:
    body = {"model": "m", "messages": user("x"), "stream": True,
            "sim": {"stall_after_chunks": 2, "stall_ms": 3000, "reply_tokens": 10}}
    received = b""
    with httpx.Client(timeout=httpx.Timeout(10, read=0.2)) as http, pytest.raises(httpx.ReadTimeout):
        with http.stream("POST", sim_url + "/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            for piece in resp.iter_bytes():
                received += piece
    assert received.count(b"data: ") == 2


def test_stall_after_chunks_pauses_a_json_body_midway(sim_url: str) -> None:
    body = {"model": "m", "messages": user("x"), "sim": {"stall_after_chunks": 1, "stall_ms": 3000}}
    with httpx.Client(timeout=httpx.Timeout(10, read=0.2)) as http, pytest.raises(httpx.ReadTimeout):
        with http.stream("POST", sim_url + "/chat/completions", json=body) as resp:
            assert resp.status_code == 200
            resp.read()


def test_stall_after_chunks_then_carries_on(http: httpx.Client) -> None:
    for stream in (False, True):
        body = {"model": "m", "messages": user("carry on"), "stream": stream,
                "sim": {"stall_after_chunks": 1, "stall_ms": 20}}
        resp = http.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200
        if stream:
            assert resp.text.endswith("data: [DONE]\n\n") and "Echo:" in resp.text
        else:
            assert resp.json()["choices"][0]["message"]["content"].startswith("Echo: carry on")


def test_embeddings_fail_status(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="e", input="x", extra_headers={"X-Sim-Fail-Status": "500"})


def test_max_context_tokens_per_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="m", messages=user("word " * 100), extra_body={"sim": {"max_context_tokens": 50}}
        )
    assert info.value.code == "context_length_exceeded"


@pytest.fixture(scope="module")
def small_context_url() -> Iterator[str]:
    base_url, stop = run_sim_in_thread(SimConfig(max_context_tokens=100))
    yield base_url
    stop()


def test_max_context_tokens_config(small_context_url: str) -> None:
    with openai.OpenAI(base_url=small_context_url, api_key="x", max_retries=0) as sdk:
        assert sdk.chat.completions.create(model="m", messages=user("short")).choices
        with pytest.raises(openai.BadRequestError) as info:
            sdk.chat.completions.create(model="m", messages=user("x" * 500))
        assert info.value.code == "context_length_exceeded"
        assert "maximum context length" in info.value.message
        # Tool schemas count toward the window too.
        tools = [{"type": "function", "function": {"name": "t", "description": "d" * 400, "parameters": {}}}]
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model="m", messages=user("short"), tools=tools)
