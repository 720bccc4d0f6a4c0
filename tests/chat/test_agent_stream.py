"""The agent stream on the wire: chunk rules checked on raw SSE bytes and through the OpenAI SDKs."""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from helpers import agent_calls, create_agent, raw_events, sdk, sim_headers
from proxy.http_server import BodyWriter


def check_chunk_rules(events: list[Any], model: str, *, usage: bool) -> dict[str, Any]:
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({(c["id"], c["created"], c["object"], c["model"]) for c in chunks}) == 1
    first = chunks[0]
    assert first["id"].startswith("chatcmpl-") and first["model"] == model
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finishes = [i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1
    tail = chunks[finishes[0] + 1:]
    if usage:
        assert len(tail) == 1 and tail[0]["choices"] == [] and tail[0]["usage"]["total_tokens"] > 0
        assert all(c["usage"] is None for c in chunks[:-1])
    else:
        assert tail == [] and all("usage" not in c or c["usage"] is None for c in chunks)
    for chunk in chunks[1:finishes[0]]:
        delta = chunk["choices"][0]["delta"]
        assert set(delta) in ({"content"}, {"tool_calls"}), delta
    return {"chunks": chunks, "finish": chunks[finishes[0]]["choices"][0]["finish_reason"],
            "text": "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]),
            "usage": tail[0]["usage"] if usage else None}


def test_raw_stream_follows_every_chunk_rule(server) -> None:
    agent = create_agent(server.base_url)
    script = [{"reply": "Thinking first.", "content_then_tool_calls": True,
               "tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "x"}}]},
              {"reply": "All done now."}]
    response = httpx.post(server.base_url + "/v1/chat/completions", timeout=30,
                          json={"model": agent, "stream": True, "stream_options": {"include_usage": True},
                                "messages": [{"role": "user", "content": "hi"}]}, headers=sim_headers(script=script))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events, _ = raw_events(response)
    out = check_chunk_rules(events, agent, usage=True)
    assert out["finish"] == "stop"
    assert out["text"] == "Thinking first.All done now."  # content from every step is forwarded


def test_tokens_that_come_apart_are_written_by_the_turn_itself_in_order(server) -> None:
    # Tokens 5 ms apart each arrive in a read of their own: past the first, the turn's task writes them (the
    # server's BodyWriter); the server tool step between the two replies goes through the queue again.
    agent = create_agent(server.base_url)
    script = [{"reply": "one two three four five six", "content_then_tool_calls": True,
               "tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "x"}}]},
              {"reply": "seven eight nine ten"}]
    before = BodyWriter.written
    response = httpx.post(server.base_url + "/v1/chat/completions", timeout=30,
                          json={"model": agent, "stream": True, "stream_options": {"include_usage": True},
                                "messages": [{"role": "user", "content": "hi"}]},
                          headers=sim_headers(script=script, token_delay_ms=5))
    events, _ = raw_events(response)
    out = check_chunk_rules(events, agent, usage=True)
    assert out["text"] == "one two three four five sixseven eight nine ten" and out["finish"] == "stop"
    assert BodyWriter.written - before >= 5


def test_a_client_tool_call_after_tokens_written_by_the_turn_comes_after_them(server) -> None:
    agent = create_agent(server.base_url)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
                                                                                    "properties": {}}}}]
    script = [{"reply": "let me look that up for you now", "content_then_tool_calls": True,
               "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}]
    before = BodyWriter.written
    response = httpx.post(server.base_url + "/v1/chat/completions", timeout=30,
                          json={"model": agent, "stream": True, "tools": tools,
                                "messages": [{"role": "user", "content": "weather?"}]},
                          headers=sim_headers(script=script, token_delay_ms=5))
    events, _ = raw_events(response)
    out = check_chunk_rules(events, agent, usage=False)
    assert out["finish"] == "tool_calls" and out["text"] == "let me look that up for you now"
    kinds = [next(iter(c["choices"][0]["delta"])) for c in out["chunks"][1:] if c["choices"][0]["delta"]]
    assert kinds == sorted(kinds)  # every "content" delta before the first "tool_calls" one
    assert kinds.count("tool_calls") >= 1 and BodyWriter.written - before >= 3


def test_usage_is_summed_over_every_upstream_call(server, sim_requests, sim_url) -> None:
    agent = create_agent(server.base_url)
    script = [{"tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "x"}}]},
              {"tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "y"}}]},
              {"reply": "done"}]
    stream = sdk(server.base_url).chat.completions.create(
        model=agent, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "go"}], extra_headers=sim_headers(**{"script": script}))
    chunks = list(stream)
    usage = chunks[-1].usage
    calls = agent_calls(sim_requests)
    assert len(calls) == 3
    # Replay each upstream request non-streamed: the simulator is deterministic, so its usage is the truth.
    expected = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for body in calls:
        replay = {k: v for k, v in body.items() if not k.startswith("_") and k not in ("stream", "stream_options")}
        scripted = {k: v for k, v in body["_headers"].items() if k.startswith("x-sim-")}
        got = httpx.post(sim_url + "/chat/completions", json=replay, headers=scripted).json()["usage"]
        for key in expected:
            expected[key] += got[key]
    assert usage.model_dump(include=set(expected)) == expected


def test_keepalive_comments_while_upstream_is_slow(make_server) -> None:
    srv = make_server(keepalive_interval=0.1)
    agent = create_agent(srv.base_url)
    response = httpx.post(srv.base_url + "/v1/chat/completions", timeout=30,
                          json={"model": agent, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                          headers=sim_headers(ttft_ms=600))
    events, comments = raw_events(response)
    assert ": keep-alive" in comments
    check_chunk_rules(events, agent, usage=False)


def test_no_keepalive_comment_while_the_turn_writes_tokens_itself(make_server) -> None:
    # Tokens 10 ms apart for ~0.6 s, keep-alives due after 0.1 s of silence: the response's task sleeps all along
    # (the turn writes the tokens), yet the stream is never silent, so no comment goes out; a slow start still
    # gets them.
    srv = make_server(keepalive_interval=0.1)
    agent = create_agent(srv.base_url)
    reply = " ".join(f"word{i}" for i in range(60))
    before = BodyWriter.written
    response = httpx.post(srv.base_url + "/v1/chat/completions", timeout=30,
                          json={"model": agent, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
                          headers=sim_headers(script=[{"reply": reply}], token_delay_ms=10, ttft_ms=350))
    events, comments = raw_events(response)
    assert check_chunk_rules(events, agent, usage=False)["text"] == reply
    assert BodyWriter.written - before >= 30
    first_content = response.text.index('"content":"word0')
    assert ": keep-alive" in response.text[:first_content]  # the 350 ms before the first token
    assert ": keep-alive" not in response.text[first_content:], comments


def test_upstream_failure_before_first_token_keeps_the_user_message(server) -> None:
    agent = create_agent(server.base_url)
    for status, expected in ((500, 502), (429, 429)):
        response = httpx.post(server.base_url + "/v1/chat/completions", timeout=30,
                              json={"model": agent, "stream": True,
                                    "messages": [{"role": "user", "content": f"fails with {status}"}]},
                              headers=sim_headers(fail_status=status))
        assert response.status_code == expected
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    with pytest.raises(openai.InternalServerError):
        sdk(server.base_url).chat.completions.create(model=agent, messages=[{"role": "user", "content": "non-stream"}],
                                                     extra_headers=sim_headers(**{"fail_status": 500}))
    stored = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
    assert [m["content"] for m in stored] == ["fails with 500", "fails with 429", "non-stream"]
    runs = httpx.get(f"{server.base_url}/v1/runs/", params={"agent_id": agent}).json()
    assert [r["status"] for r in runs] == ["failed"] * 3


def test_upstream_failure_after_first_token_is_an_error_event(server) -> None:
    agent = create_agent(server.base_url)
    response = httpx.post(server.base_url + "/v1/chat/completions", timeout=30,
                          json={"model": agent, "stream": True, "messages": [{"role": "user", "content": "cut me off"}]},
                          headers=sim_headers(fail_after_chunks=4, reply_tokens=20))
    assert response.status_code == 200
    events, _ = raw_events(response)
    assert events[-1] == "[DONE]" and "error" in events[-2]
    assert events[-2]["error"]["code"]
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-2] if e.get("choices"))
    assert streamed
    stored = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
    assert stored[0]["content"] == "cut me off"
    assert stored[1]["message_type"] == "assistant_message" and stored[1]["content"] == streamed
    with pytest.raises(openai.APIError):
        list(sdk(server.base_url).chat.completions.create(
            model=agent, stream=True, messages=[{"role": "user", "content": "again"}],
            extra_headers=sim_headers(**{"fail_after_chunks": 3})))


def test_client_disconnect_cancels_the_upstream_and_keeps_what_was_streamed(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    received = ""
    with httpx.stream("POST", server.base_url + "/v1/chat/completions", timeout=30,
                      json={"model": agent, "stream": True, "messages": [{"role": "user", "content": "long story"}]},
                      headers=sim_headers(token_delay_ms=100, reply_tokens=200)) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                received += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            if len(received.split()) >= 3:
                break
    deadline = time.monotonic() + 10
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        runs = httpx.get(f"{server.base_url}/v1/runs/", params={"agent_id": agent}).json()
        if runs and runs[0]["status"] != "running":
            run = runs[0]
            break
        time.sleep(0.05)
    assert run.get("status") == "cancelled"
    assert run["timings"]["upstream_ms"] < 200 * 100  # the 20 s reply was not waited for
    stored = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
    partial = stored[-1]["content"]
    assert partial.startswith(received) and len(partial.split()) < 200
    # The next turn tells the model its last reply was cut off.
    sdk(server.base_url).chat.completions.create(model=agent, messages=[{"role": "user", "content": "sorry?"}])
    previous = agent_calls(sim_requests)[-1]["messages"][-2]
    assert previous["role"] == "assistant" and "interrupted" in previous["content"]


def test_concurrent_requests_to_one_agent_never_interleave(server) -> None:
    agent = create_agent(server.base_url)
    errors: list[BaseException] = []

    def talk(i: int) -> None:
        try:
            sdk(server.base_url).chat.completions.create(
                model=agent, messages=[{"role": "user", "content": f"message {i}"}],
                extra_headers=sim_headers(**{"ttft_ms": 20, "reply": f"answer {i}"}))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=talk, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stored = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
    assert len(stored) == 12
    for user, assistant in zip(stored[::2], stored[1::2]):
        assert user["message_type"] == "user_message" and assistant["message_type"] == "assistant_message"
        assert assistant["content"] == "answer " + user["content"].split()[-1]


def test_turns_of_many_agents_at_once_are_each_stored_whole(server) -> None:
    agents = [create_agent(server.base_url) for _ in range(12)]
    errors: list[BaseException] = []
    store = server.rt.store
    # On PostgreSQL, turns that commit at the same moment go as one pipelined batch: rounds until one did.
    pipelined = getattr(store, "commit_pipelined", None)

    def talk(i: int, turn: int) -> None:
        try:
            sdk(server.base_url).chat.completions.create(
                model=agents[i], messages=[{"role": "user", "content": f"question {i} {turn}"}],
                extra_headers=sim_headers(**{"ttft_ms": 20, "reply": f"answer {i} {turn}"}))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    turns = 0
    while turns < 5:
        threads = [threading.Thread(target=talk, args=(i, turns)) for i in range(len(agents))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        turns += 1
        if pipelined is None or store.commit_pipelined > pipelined:
            break
    assert not errors
    assert pipelined is None or store.commit_pipelined > pipelined
    for i, agent in enumerate(agents):
        stored = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
        assert [m["content"] for m in stored] == [f"{who} {i} {t}" for t in range(turns)
                                                  for who in ("question", "answer")]


def test_busy_agent_times_out_with_409(make_server) -> None:
    srv = make_server(agent_lock_timeout=0.2)
    agent = create_agent(srv.base_url)
    slow = threading.Thread(target=lambda: sdk(srv.base_url).chat.completions.create(
        model=agent, messages=[{"role": "user", "content": "slow"}], extra_headers=sim_headers(**{"ttft_ms": 1500})))
    slow.start()
    time.sleep(0.3)
    with pytest.raises(openai.ConflictError) as info:
        sdk(srv.base_url).chat.completions.create(model=agent, messages=[{"role": "user", "content": "fast"}])
    assert info.value.body["code"] == "agent_busy"
    slow.join()


async def test_async_sdk_stream_and_non_stream(server) -> None:
    agent = create_agent(server.base_url)
    client = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0)
    full = await client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "alpha beta"}])
    assert full.object == "chat.completion" and full.usage.total_tokens > 0
    stream = await client.chat.completions.create(model=agent, stream=True, stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "alpha beta"}])
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == full.choices[0].message.content and usage.total_tokens > 0
    await client.close()


def test_sdk_stream_helper_against_an_agent(server) -> None:
    agent = create_agent(server.base_url)
    with sdk(server.base_url).chat.completions.stream(
            model=agent, messages=[{"role": "user", "content": "helper please"}],
            stream_options={"include_usage": True}) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == final.choices[0].message.content
    assert final.choices[0].finish_reason == "stop" and final.usage.total_tokens > 0


def normalise(raw: bytes) -> bytes:
    raw = re.sub(rb'"id":"chatcmpl-[^"]+"', b'"id":"X"', raw)
    return re.sub(rb'"created":\d+', b'"created":0', raw)


@pytest.mark.parametrize("stream", [True, False])
def test_passthrough_is_byte_faithful(server, sim_url, sim_requests, stream) -> None:
    body = {"model": "sim-small", "stream": stream, "messages": [{"role": "user", "content": "straight through"}],
            "stream_options": {"include_usage": True} if stream else None, "vendor_field": {"keep": 1}}
    direct = httpx.post(sim_url + "/chat/completions", json=body)
    proxied = httpx.post(server.base_url + "/v1/chat/completions", json=body)
    assert proxied.status_code == direct.status_code == 200
    assert normalise(proxied.content) == normalise(direct.content)
    sent = sim_requests()
    assert sent[-1]["vendor_field"] == {"keep": 1} and sent[-1]["model"] == "sim-small"


def test_passthrough_relays_upstream_errors(server) -> None:
    response = httpx.post(server.base_url + "/v1/chat/completions",
                          json={"model": "sim-small", "messages": [{"role": "user", "content": "x"}],
                                "sim": {"fail_status": 429}})
    assert response.status_code == 429
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert "retry-after" in response.headers


def test_chat_body_limit_read_from_the_raw_headers_or_counted_as_it_arrives(make_server, sim_requests) -> None:
    server = make_server(max_body_bytes=3000)
    agent = create_agent(server.base_url)
    url = server.base_url + "/v1/chat/completions"
    kept = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages").json()

    def pieces(body: dict[str, Any]) -> Any:  # no Content-Length: sent chunked, in pieces of 100 bytes
        raw = json.dumps(body).encode()
        return (raw[i:i + 100] for i in range(0, len(raw), 100))

    big = [{"role": "user", "content": "x" * 4000}]
    for model in ("sim-small", agent):
        declared = httpx.post(url, json={"model": model, "messages": big})
        counted = httpx.post(url, content=pieces({"model": model, "messages": big}),
                             headers={"Content-Type": "application/json"})
        for response, said in ((declared, "bytes; the limit is 3000"), (counted, "exceeds the limit of 3000")):
            assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
            assert said in response.json()["error"]["message"]
    # Nothing of the refused turns was kept; a body in pieces under the limit goes through whole.
    assert httpx.get(f"{server.base_url}/v1/agents/{agent}/messages").json() == kept
    small = {"model": "sim-small", "messages": [{"role": "user", "content": "y" * 1500}], "vendor": {"k": 1}}
    response = httpx.post(url, content=pieces(small), headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    sent = sim_requests()[-1]
    assert {key: sent[key] for key in small} == small


def test_model_list_has_agents_and_upstream_models(server) -> None:
    agent = create_agent(server.base_url)
    ids = [m.id for m in sdk(server.base_url).models.list()]
    assert agent in ids and "sim-small" in ids


def test_different_agents_run_their_turns_at_the_same_time(server) -> None:
    agents = [create_agent(server.base_url) for _ in range(4)]
    threads = [threading.Thread(target=lambda a=a: sdk(server.base_url).chat.completions.create(
        model=a, messages=[{"role": "user", "content": "hi"}], extra_headers=sim_headers(**{"ttft_ms": 1500})))
        for a in agents]
    for t in threads:
        t.start()
    most_running = 0
    while any(t.is_alive() for t in threads):
        runs = httpx.get(f"{server.base_url}/v1/runs/", params={"limit": 50}).json()
        most_running = max(most_running, sum(1 for r in runs if r["agent_id"] in agents and r["status"] == "running"))
        time.sleep(0.05)
    assert most_running == 4
