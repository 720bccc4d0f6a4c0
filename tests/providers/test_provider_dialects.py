"""Every provider's dialect, through an agent and through passthrough: what the model said reaches the client."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dialects import DIALECTS, LOGPROB, PROVIDER_HEADERS, Dialect, completion_body
from helpers import create_agent, raw_events

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def _expected_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Token counts as memproxy sums them: integers, and the integer fields of the detail objects."""
    out: dict[str, Any] = {}
    for key, value in usage.items():
        if isinstance(value, int):
            out[key] = value
        elif isinstance(value, dict) and key.endswith("_details"):
            out[key] = {k: v for k, v in value.items() if isinstance(v, int)}
    return out


def _body(model: str, dialect: Dialect, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if dialect.tool_call:
        body["tools"] = [WEATHER]
    return body


def _gather_stream(events: list[Any]) -> dict[str, Any]:
    """Fold SSE chunks back into one message, the way an OpenAI client does."""
    out: dict[str, Any] = {"content": "", "finish": [], "usage": None, "fields": {}, "calls": {}, "error": None,
                           "fingerprints": set()}
    for event in events:
        if event == "[DONE]":
            continue
        if "error" in event and "choices" not in event:
            out["error"] = event["error"]
            continue
        if event.get("system_fingerprint"):
            out["fingerprints"].add(event["system_fingerprint"])
        if event.get("usage"):
            out["usage"] = event["usage"]
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            out["content"] += delta.get("content") or ""
            for name in ("reasoning_content", "reasoning", "refusal"):
                if isinstance(delta.get(name), str):
                    out["fields"][name] = out["fields"].get(name, "") + delta[name]
            if delta.get("annotations"):
                out["fields"].setdefault("annotations", []).extend(delta["annotations"])
            for call in delta.get("tool_calls") or ():
                entry = out["calls"].setdefault(call["index"], {"name": "", "arguments": ""})
                entry["name"] += (call.get("function") or {}).get("name") or ""
                entry["arguments"] += (call.get("function") or {}).get("arguments") or ""
            if choice.get("finish_reason"):
                out["finish"].append(choice["finish_reason"])
    return out


def _last_assistant(gateway: Any, agent: str) -> Any:
    messages = gateway.call(gateway.rt.store.list_messages(agent, limit=None))
    return [m for m in messages if m.role == "assistant"][-1]


ANSWERING = [name for name, d in DIALECTS.items() if d.error is None and not d.own_test]


@pytest.mark.parametrize("name", ANSWERING)
def test_agent_stream_relays_and_keeps_what_the_model_said(gateway, provider, name: str) -> None:
    dialect = DIALECTS[name]
    agent = create_agent(gateway.base_url, model=name)
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=_body(agent, dialect, True), timeout=20)
    assert response.status_code == 200, response.text
    events, _ = raw_events(response)
    assert events[-1] == "[DONE]"
    got = _gather_stream(events)
    assert got["error"] is None
    assert got["content"] == (dialect.content or "")
    assert got["finish"] == [dialect.finish]
    assert got["usage"] == _expected_usage(dialect.usage)
    if dialect.reasoning:
        assert got["fields"][dialect.reasoning[0]] == dialect.reasoning[1]
    if dialect.refusal:
        assert got["fields"]["refusal"] == dialect.refusal
    if "annotations" in dialect.extra:
        assert got["fields"]["annotations"] == dialect.extra["annotations"]
    if dialect.tool_call:
        assert [(c["name"], c["arguments"]) for c in got["calls"].values()] == [dialect.tool_call]
    fingerprint = next((c.get("system_fingerprint") for c in dialect.stream if isinstance(c, dict)
                        and c.get("system_fingerprint")), None)
    assert got["fingerprints"] == ({fingerprint} if fingerprint else set())

    stored = _last_assistant(gateway, agent)
    assert stored.content == dialect.content
    if dialect.reasoning:
        assert stored.metadata["reasoning"] == dialect.reasoning[1]
    if dialect.refusal:
        assert stored.metadata["refusal"] == dialect.refusal
    if dialect.tool_call:
        assert stored.tool_calls[0]["function"]["arguments"] == dialect.tool_call[1]
    run = httpx.get(f"{gateway.base_url}/v1/runs/", params={"agent_id": agent}).json()[0]
    assert run["status"] == "completed"
    assert all(run["usage"][k] == dialect.usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens"))


@pytest.mark.parametrize("name", ANSWERING)
def test_agent_completion_carries_what_the_model_said(gateway, provider, name: str) -> None:
    dialect = DIALECTS[name]
    agent = create_agent(gateway.base_url, model=name)
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=_body(agent, dialect, False), timeout=20)
    assert response.status_code == 200, response.text
    answer = response.json()
    choice = answer["choices"][0]
    message = choice["message"]
    assert choice["finish_reason"] == dialect.finish
    assert answer["usage"] == _expected_usage(dialect.usage)
    assert message["content"] == (dialect.content if dialect.content or dialect.refusal or dialect.tool_call else "")
    if dialect.reasoning:
        assert message[dialect.reasoning[0]] == dialect.reasoning[1]
    assert message["refusal"] == dialect.refusal
    if "annotations" in dialect.extra:
        assert message["annotations"] == dialect.extra["annotations"]
    if dialect.tool_call:
        call = message["tool_calls"][0]["function"]
        assert (call["name"], call["arguments"]) == dialect.tool_call


def test_reasoning_and_refusals_shape_later_turns_as_the_provider_expects(gateway, provider) -> None:
    # Reasoning is never sent back (DeepSeek rejects it); a refusal is sent back as the assistant's refusal.
    for name in ("deepseek", "openai-refusal"):
        agent = create_agent(gateway.base_url, model=name)
        for text in ("first", "second"):
            body = {"model": agent, "messages": [{"role": "user", "content": text}]}
            assert httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=20).status_code == 200
        history = provider.requests[-1]["messages"]
        assistant = [m for m in history if m["role"] == "assistant"]
        assert len(assistant) == 1
        assert "reasoning_content" not in assistant[0] and "reasoning" not in assistant[0]
        if name == "openai-refusal":
            assert assistant[0]["refusal"] == DIALECTS[name].refusal


@pytest.mark.parametrize("stream", [True, False])
def test_a_mid_stream_provider_error_fails_the_turn(gateway, provider, stream: bool) -> None:
    dialect = DIALECTS["openrouter-error"]
    agent = create_agent(gateway.base_url, model=dialect.name)
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=_body(agent, dialect, stream), timeout=20)
    if stream:
        events, _ = raw_events(response)
        assert events[-1] == "[DONE]"
        got = _gather_stream(events)
        assert dialect.error in got["error"]["message"] and got["finish"] == []
    else:
        assert response.status_code == 502
        assert dialect.error in response.json()["error"]["message"]
    stored = _last_assistant(gateway, agent)
    assert stored.content == dialect.content and stored.metadata.get("interrupted") is True
    run = httpx.get(f"{gateway.base_url}/v1/runs/", params={"agent_id": agent}).json()[0]
    assert run["status"] == "failed"


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_passthrough_relays_every_dialect(gateway, provider, name: str) -> None:
    dialect = DIALECTS[name]
    streamed = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=_body(name, dialect, True), timeout=20)
    assert streamed.status_code == 200
    events, comments = raw_events(streamed)
    sent = [c for c in dialect.stream if isinstance(c, dict)]
    assert [e for e in events if e != "[DONE]"] == sent
    assert (events[-1] == "[DONE]") == dialect.done
    got = _gather_stream(events)
    if dialect.reasoning:
        assert got["fields"][dialect.reasoning[0]] == dialect.reasoning[1]
    whole = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=_body(name, dialect, False), timeout=20)
    assert whole.status_code == 200 and whole.json() == completion_body(dialect)


def test_request_fields_are_forwarded_and_token_limits_normalized(gateway, provider) -> None:
    agent = create_agent(gateway.base_url, model="openai", llm_config={"model": "openai", "max_tokens": 300})
    extra = {"user": "u-1", "service_tier": "flex", "prompt_cache_key": "k1", "safety_identifier": "s1",
             "store": True, "metadata": {"app": "demo"}, "prediction": {"type": "content", "content": "Tides"},
             "modalities": ["text"], "verbosity": "low", "web_search_options": {}, "logprobs": True,
             "top_logprobs": 2, "max_completion_tokens": 50}
    body = {"model": agent, "messages": [{"role": "user", "content": "hi"}], **extra}
    assert httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=20).status_code == 200
    sent = provider.requests[-1]
    for key, value in extra.items():
        assert sent[key] == value, key
    assert "max_tokens" not in sent  # the agent's default gave way to the request's own limit
    # Without a request limit the agent's default goes up under its own name.
    body = {"model": agent, "messages": [{"role": "user", "content": "again"}], "metadata": {"crm": "secret"}}
    assert httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=20).status_code == 200
    sent = provider.requests[-1]
    assert sent["max_tokens"] == 300 and "max_completion_tokens" not in sent
    assert "metadata" not in sent  # client metadata goes upstream only with `store: true`


def test_tool_choice_shapes_only_the_first_step_and_works_with_server_tools_alone(gateway, provider) -> None:
    agent = create_agent(gateway.base_url, model="ollama")
    before = len(provider.requests)
    body = {"model": agent, "tool_choice": "required", "messages": [{"role": "user", "content": "I like tea"}]}
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=20)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "Hi there"
    first, second = provider.requests[before:]
    assert first["tool_choice"] == "required" and first["tools"][0]["function"]["name"] == "memory_insert"
    assert "tool_choice" not in second and second["messages"][-1]["role"] == "tool"
    human = httpx.get(f"{gateway.base_url}/v1/agents/{agent}/core-memory/blocks/human").json()
    assert human["value"].endswith("Prefers tea")


RELAYED = {"x-request-id", "openai-processing-ms", "x-ratelimit-remaining-requests", "x-ratelimit-limit-tokens"}


def _assert_allow_listed(headers: httpx.Headers) -> None:
    for name, value in PROVIDER_HEADERS.items():
        if name in RELAYED:
            assert headers.get(name) == value, name
        else:
            assert name not in headers, f"{name} must not reach the client"


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/completions", "/v1/responses", "/v1/moderations"])
def test_other_openai_endpoints_pass_through_with_allow_listed_headers(gateway, provider, path: str) -> None:
    body = {"model": "text-embedding-3-small", "input": "hello"}
    response = httpx.post(gateway.base_url + path, json=body, timeout=20)
    assert response.status_code == 200
    assert response.json() == {"object": "echo", "method": "POST", "path": path, "body": body}
    _assert_allow_listed(response.headers)
    agent = create_agent(gateway.base_url)
    refused = httpx.post(gateway.base_url + path, json={"model": agent, "input": "hi"}, timeout=20)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "model"


def test_models_by_id_describe_agents_and_pass_the_rest_through(gateway, provider) -> None:
    agent = create_agent(gateway.base_url)
    mine = httpx.get(f"{gateway.base_url}/v1/models/{agent}", timeout=20).json()
    assert mine["id"] == agent and mine["object"] == "model" and mine["owned_by"] == "memproxy"
    missing = httpx.get(f"{gateway.base_url}/v1/models/agent-00000000-0000-4000-8000-000000000000", timeout=20)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    theirs = httpx.get(f"{gateway.base_url}/v1/models/gpt-4o", timeout=20).json()
    assert theirs == {"object": "echo", "method": "GET", "path": "/v1/models/gpt-4o", "body": None}


@pytest.mark.parametrize("stream", [True, False])
def test_a_body_gzipped_regardless_is_decoded_on_both_routes(gateway, provider, stream: bool) -> None:
    body = {"model": "gzip-anyway", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    relayed = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=20)
    assert relayed.status_code == 200 and "content-encoding" not in relayed.headers
    _assert_allow_listed(relayed.headers)
    if stream:
        assert _gather_stream(raw_events(relayed)[0])["content"] == "Hi there"
    else:
        assert relayed.json()["choices"][0]["message"]["content"] == "Hi there"
    agent = create_agent(gateway.base_url, model="gzip-anyway")
    answered = httpx.post(f"{gateway.base_url}/v1/chat/completions", timeout=20,
                          json={"model": agent, "messages": [{"role": "user", "content": "hi"}]})
    assert answered.status_code == 200 and answered.json()["choices"][0]["message"]["content"] == "Hi there"


def test_a_non_streamed_answer_cut_or_stalled_mid_body_is_502_or_504(make_server, provider) -> None:
    srv = make_server(upstream_url=provider.base_url, upstream_timeout=1.0)
    for model, status in (("cut-mid-body", 502), ("stall-mid-body", 504)):
        response = httpx.post(f"{srv.base_url}/v1/chat/completions", timeout=20,
                              json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == status, (model, response.text)
        assert response.json()["error"]["code"] in ("upstream_stream_cut", "upstream_timeout")


@pytest.mark.parametrize("stream", [True, False])
def test_an_audio_reply_is_relayed_and_kept_as_its_transcript(gateway, provider, stream: bool) -> None:
    dialect = DIALECTS["openai-audio"]
    agent = create_agent(gateway.base_url, model=dialect.name)
    body = {**_body(agent, dialect, stream), "modalities": ["text", "audio"], "audio": {"voice": "alloy",
                                                                                        "format": "wav"}}
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=20)
    assert response.status_code == 200
    if stream:
        events, _ = raw_events(response)
        audio = [e["choices"][0]["delta"]["audio"] for e in events
                 if e != "[DONE]" and e.get("choices") and "audio" in e["choices"][0]["delta"]]
        assert "".join(a.get("transcript", "") for a in audio) == "Hello there."
        assert "".join(a.get("data", "") for a in audio) == "UklGRg==AAAA"
        assert _gather_stream(events)["usage"] == _expected_usage(dialect.usage)
    else:
        message = response.json()["choices"][0]["message"]
        assert message["audio"] == {"id": "audio_6b1", "transcript": "Hello there.", "data": "UklGRg==AAAA",
                                    "expires_at": 1764543600}
    assert provider.requests[-1]["modalities"] == ["text", "audio"]
    stored = _last_assistant(gateway, agent)
    assert stored.content == "Hello there."  # what later turns (and search) read
    assert stored.metadata["audio"] == {"id": "audio_6b1", "transcript": "Hello there.", "expires_at": 1764543600}


@pytest.mark.parametrize("asked", [True, False])
def test_logprobs_are_relayed_and_kept_only_when_asked_for(gateway, provider, asked: bool) -> None:
    dialect = DIALECTS["openai-logprobs"]
    agent = create_agent(gateway.base_url, model=dialect.name)
    for stream in (True, False):
        body = {**_body(agent, dialect, stream), **({"logprobs": True, "top_logprobs": 0} if asked else {})}
        body["messages"] = [{"role": "user", "content": f"stream={stream}"}]
        response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, timeout=20)
        if stream:
            events, _ = raw_events(response)
            sent = [c["logprobs"] for e in events if e != "[DONE]" for c in e.get("choices") or ()
                    if c["logprobs"] and c["logprobs"]["content"]]
            assert sent == ([{"content": LOGPROB, "refusal": None}] if asked else [])
        else:
            choice = response.json()["choices"][0]
            assert choice["logprobs"] == ({"content": LOGPROB} if asked else None)
        stored = _last_assistant(gateway, agent)
        assert stored.metadata.get("logprobs") == (LOGPROB if asked else None)
