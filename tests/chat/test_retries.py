"""Retries never run a turn twice: they replay the finished turn or join the one in flight."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from helpers import create_agent, raw_events, sdk, sim_headers


def user_messages(base_url: str, agent: str) -> list[str]:
    stored = httpx.get(f"{base_url}/v1/agents/{agent}/messages", params={"order": "asc", "limit": 1000}).json()
    return [m["content"] for m in stored if m["message_type"] == "user_message"]


def runs(base_url: str, agent: str) -> list[dict]:
    return httpx.get(f"{base_url}/v1/runs/", params={"agent_id": agent}).json()


def _count_499(base_url: str) -> float:
    for line in httpx.get(base_url + "/metrics").text.splitlines():
        if line.startswith('memproxy_requests_total{route="chat_completions",status="499"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_identical_transcript_replays_the_stored_answer(server) -> None:
    agent = create_agent(server.base_url)
    first_reply = sdk(server.base_url).chat.completions.create(
        model=agent, messages=[{"role": "user", "content": "hello"}]).choices[0].message.content
    body = {"model": agent, "stream": True, "messages": [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": first_reply},
        {"role": "user", "content": "only once"}]}
    first = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=30)
    second = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=30)
    text = [("".join(e["choices"][0]["delta"].get("content") or "" for e in raw_events(r)[0][:-1] if e["choices"]))
            for r in (first, second)]
    assert text[0] == text[1] and text[0]
    assert user_messages(server.base_url, agent) == ["hello", "only once"]
    assert len(runs(server.base_url, agent)) == 2


def test_a_bare_message_repeated_after_its_turn_is_a_new_turn(server) -> None:
    agent = create_agent(server.base_url)
    body = {"model": agent, "messages": [{"role": "user", "content": "yes"}]}
    for _ in range(2):
        assert httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=30).status_code == 200
    assert user_messages(server.base_url, agent) == ["yes", "yes"]


def test_same_idempotency_key_replays_even_non_streamed(server) -> None:
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    headers = {"Idempotency-Key": "turn-42"}
    a = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "k"}], extra_headers=headers)
    b = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "k"}], extra_headers=headers)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert user_messages(server.base_url, agent) == ["k"]


def test_x_idempotency_key_and_x_request_id_key_a_retry_and_idempotency_key_comes_first(server) -> None:
    agent = create_agent(server.base_url)

    def send(text: str, headers: dict[str, str]) -> str:
        response = httpx.post(server.base_url + "/v1/chat/completions", timeout=30, headers=headers,
                              json={"model": agent, "messages": [{"role": "user", "content": text}]})
        assert response.status_code == 200
        return str(response.json()["choices"][0]["message"]["content"])

    a = send("one", {"X-Idempotency-Key": "x-1"})
    assert send("one", {"X-Idempotency-Key": "x-1"}) == a  # replayed, not run again
    b = send("two", {"X-Request-Id": "req-2"})
    assert send("two", {"X-Request-Id": "req-2"}) == b
    # Idempotency-Key is read before X-Request-Id: a new request id with the same key is the same turn...
    c = send("three", {"Idempotency-Key": "k-3", "X-Request-Id": "req-3a"})
    assert send("three", {"Idempotency-Key": "k-3", "X-Request-Id": "req-3b"}) == c
    # ...and the same request id under a new key is a new turn.
    send("three", {"Idempotency-Key": "k-4", "X-Request-Id": "req-3a"})
    assert user_messages(server.base_url, agent) == ["one", "two", "three", "three"]


def test_concurrent_duplicate_joins_the_turn_in_flight(server) -> None:
    agent = create_agent(server.base_url)
    body = {"model": agent, "messages": [{"role": "user", "content": "twice at once"}]}
    results: list[str] = []

    def send() -> None:
        r = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=30,
                       headers=sim_headers(ttft_ms=400))
        results.append(r.json()["choices"][0]["message"]["content"])

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert user_messages(server.base_url, agent) == ["twice at once"]
    assert len(runs(server.base_url, agent)) == 1


def test_retry_after_a_slow_start_gets_the_answer_without_a_second_turn(server) -> None:
    agent = create_agent(server.base_url)
    body = {"model": agent, "stream": True, "messages": [{"role": "user", "content": "are you there"}]}
    with pytest.raises(httpx.ReadTimeout):
        # A voice client giving up before the first token...
        with httpx.stream("POST", server.base_url + "/v1/chat/completions", json=body,
                          headers=sim_headers(ttft_ms=1500), timeout=httpx.Timeout(5, read=0.3)) as r:
            for _ in r.iter_lines():
                pass
    # ...and sending the same request again.
    retry = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=30)
    events, _ = raw_events(retry)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
    assert user_messages(server.base_url, agent) == ["are you there"]
    assert len(runs(server.base_url, agent)) == 1


def test_a_client_gone_before_the_first_chunk_gets_499_and_the_turn_finishes_for_its_retry(server) -> None:
    agent = create_agent(server.base_url)
    body = {"model": agent, "stream": True, "messages": [{"role": "user", "content": "hung up early"}]}
    before = _count_499(server.base_url)
    payload = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in sim_headers(ttft_ms=800).items()).encode()
    # Hang up while the upstream is still thinking, before any chunk exists...
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + head
                     + b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        time.sleep(0.2)
    # ...and send the same request again: it follows the turn the first one started.
    retry = httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=30)
    events, _ = raw_events(retry)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
    assert user_messages(server.base_url, agent) == ["hung up early"]
    assert [r["status"] for r in runs(server.base_url, agent)] == ["completed"]
    assert _count_499(server.base_url) == before + 1  # the first request's answer, once its first chunk came


def test_retry_after_an_upstream_failure_runs_again_without_repeating_the_user(server) -> None:
    agent = create_agent(server.base_url)
    body = {"model": agent, "messages": [{"role": "user", "content": "flaky"}]}
    failed = httpx.post(server.base_url + "/v1/chat/completions", json=body, headers=sim_headers(fail_status=500))
    assert failed.status_code == 502
    ok = httpx.post(server.base_url + "/v1/chat/completions", json=body)
    assert ok.status_code == 200
    assert user_messages(server.base_url, agent) == ["flaky"]
    assert [r["status"] for r in runs(server.base_url, agent)] == ["completed", "failed"]


def test_a_new_turn_with_the_same_words_is_not_a_retry(server) -> None:
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    first = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "yes"}])
    transcript = [{"role": "user", "content": "yes"},
                  {"role": "assistant", "content": first.choices[0].message.content},
                  {"role": "user", "content": "yes"}]
    client.chat.completions.create(model=agent, messages=transcript)
    assert user_messages(server.base_url, agent) == ["yes", "yes"]


def test_recorded_turns_are_bounded_per_agent_and_across_agents() -> None:
    from proxy.chat.retries import RecentTurns

    recent = RecentTurns(per_agent=4, max_agents=3)
    for n in range(10):  # bare messages: replayable only while in flight (ttl 0)
        record = recent.start("agent-a", f"body:{n}", 0.0)
        record.add("finish", ("stop", {}))
    assert len(recent) == 1  # finished, expired records go when the agent starts its next turn
    kept = recent.start("agent-a", "key:k", 600.0)
    kept.add("finish", ("stop", {}))
    assert recent.find("agent-a", "key:k") is kept  # an idempotency key replays for ten minutes
    for agent in ("agent-b", "agent-c", "agent-d"):
        recent.start(agent, "key:k", 600.0)
    assert recent.find("agent-a", "key:k") is None  # least recently active agent dropped past max_agents
    assert recent.find("agent-d", "key:k") is not None and len(recent) == 3


def _key(messages: list[dict]) -> str:
    from proxy.chat.new_input import split_new_input
    from proxy.chat.protocol import parse_chat_request
    from proxy.chat.retries import turn_key

    chat = parse_chat_request({"model": "agent-x", "messages": messages})
    return turn_key(chat, {}, split_new_input(chat.messages))[0]


def test_the_retry_key_follows_the_new_input_and_the_answer_before_it_not_older_history() -> None:
    base = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": "again"}]
    older_edited = [base[0], {"role": "user", "content": "HI"}, *base[2:]]
    assert _key(older_edited) == _key(base)  # the agent keeps its own history: older messages change nothing
    assert _key([*base[:2], {"role": "assistant", "content": "hey"}, base[3]]) != _key(base)  # after another answer
    assert _key([base[0], *base]) != _key(base)  # at another length
    assert _key([{"role": "system", "content": "be long"}, *base[1:]]) != _key(base)  # other instructions
    assert _key([*base[:3], {"role": "user", "content": "again!"}]) != _key(base)  # other new input
