"""Resumable runs on chat completions: numbered events kept in Redis, resumed by POST, GET or Last-Event-ID."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from helpers import create_agent, sdk, sim_headers
from sse import ids, parse, read_some

RESUMABLE = {"X-Memproxy-Resumable": "1"}


def chat(agent: str, text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": agent, "messages": [{"role": "user", "content": text}], "stream": True, **extra}


def text_of(events: list[tuple[int | None, Any]]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for _, e in events
                   if isinstance(e, dict) and e.get("choices"))


def test_every_event_is_numbered_and_any_resume_gets_exactly_the_rest(resumable_server: Any) -> None:
    server = resumable_server()
    agent = create_agent(server.base_url)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        response = http.post("/v1/chat/completions", json=chat(agent, stream_options={"include_usage": True}),
                             headers={**RESUMABLE, **sim_headers(reply_tokens=12)})
        assert response.status_code == 200, response.text
        run_id = response.headers["x-memproxy-run-id"]
        events = parse(response.text)
        assert ids(events) == list(range(1, len(events) + 1))
        assert events[-1][1] == "[DONE]" and len(events) > 12
        for after in (0, 1, 5, len(events) - 1):
            rest = events[after:]
            posted = http.post(f"/v1/runs/{run_id}/stream", json={"starting_after": after})
            got = http.get(f"/v1/runs/{run_id}/stream", params={"starting_after": after})
            header = http.get(f"/v1/runs/{run_id}/stream", headers={"Last-Event-ID": str(after)})
            for resumed in (posted, got, header):
                assert resumed.status_code == 200, resumed.text
                assert resumed.headers["content-type"].startswith("text/event-stream")
                assert parse(resumed.text) == rest
        # Last-Event-ID wins over the URL's cursor: it is what a reconnecting EventSource adds to the same URL.
        both = http.get(f"/v1/runs/{run_id}/stream", params={"starting_after": 0}, headers={"Last-Event-ID": "3"})
        assert parse(both.text) == events[3:]
        # At the very end: nothing but a clean end.
        last = http.get(f"/v1/runs/{run_id}/stream", params={"starting_after": len(events)})
        assert last.status_code == 200 and parse(last.text) == []
        stored = http.get(f"/v1/runs/{run_id}").json()
        assert stored["status"] == "completed"


def test_a_client_that_leaves_mid_stream_resumes_with_no_gap_and_no_duplicate(resumable_server: Any) -> None:
    server = resumable_server()
    agent = create_agent(server.base_url)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        headers = {**RESUMABLE, **sim_headers(reply_tokens=30, token_delay_ms=20)}
        with http.stream("POST", "/v1/chat/completions", json=chat(agent), headers=headers) as response:
            assert response.status_code == 200
            run_id = response.headers["x-memproxy-run-id"]
            first = read_some(response, 4)
        assert ids(first) == [1, 2, 3, 4]
        # The turn was not cancelled by the client leaving: the rest comes live, then [DONE].
        rest = parse(http.post(f"/v1/runs/{run_id}/stream", json={"starting_after": 4}).text)
        assert ids(rest) == list(range(5, 5 + len(rest)))
        assert rest[-1][1] == "[DONE]"
        whole = first + rest
        messages = http.get(f"/v1/agents/{agent}/messages").json()
        answer = [m for m in messages if m.get("message_type") == "assistant_message"][-1]
        assert text_of(whole) == answer["content"]
        assert http.get(f"/v1/runs/{run_id}").json()["status"] == "completed"


def test_openai_sdk_reads_a_resumable_stream_as_any_other(resumable_server: Any) -> None:
    # A slow first token: keep-alives go out between numbered events (and must not look like empty events).
    server = resumable_server()
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    slow = {**RESUMABLE, **sim_headers(reply="one two three", ttft_ms=700)}
    stream = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "hi"}], stream=True,
                                            extra_headers=slow)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"
    plain = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "again"}],
                                           stream=True, extra_headers=sim_headers(reply="one two three"))
    assert [c.model_dump(exclude={"id", "created"}) for c in plain] == \
        [c.model_dump(exclude={"id", "created"}) for c in chunks]


def test_a_plain_turn_keeps_no_event_log_in_redis(resumable_server: Any, keys: Any, redis_prefix: str) -> None:
    server = resumable_server()
    agent = create_agent(server.base_url)
    response = httpx.post(server.base_url + "/v1/chat/completions", json=chat(agent), timeout=30)
    assert response.status_code == 200
    assert all(event_id is None for event_id, _ in parse(response.text))
    # Its lease (lock, fence, version, retry record) is in Redis; no event of it is.
    assert list(keys.scan_iter(match=redis_prefix + "runlog:*")) == []
    run_id = response.headers["x-memproxy-run-id"]
    resumed = httpx.get(f"{server.base_url}/v1/runs/{run_id}/stream", timeout=30)
    assert resumed.status_code == 404 and resumed.json()["error"]["type"] == "not_found_error"


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_bad_resume_requests_are_refused(resumable_server: Any) -> None:
    server = resumable_server()
    agent = create_agent(server.base_url)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        done = http.post("/v1/chat/completions", json=chat(agent), headers=RESUMABLE)
        run_id = done.headers["x-memproxy-run-id"]
        count = len(parse(done.text))
        _error(http.get("/v1/runs/nope/stream"), 404)
        _error(http.post("/v1/runs/run-00000000-0000-4000-8000-000000000000/stream", json={}), 404)
        for bad in (-1, "x", 1.5, True, None):
            body = {"starting_after": bad}
            if bad is None:
                body = {"starting_after": 0, "batch_size": 0}
            assert _error(http.post(f"/v1/runs/{run_id}/stream", json=body), 400)["param"] in (
                "starting_after", "batch_size")
        assert _error(http.get(f"/v1/runs/{run_id}/stream", params={"starting_after": "two"}), 400)["param"] == \
            "starting_after"
        assert _error(http.get(f"/v1/runs/{run_id}/stream", headers={"Last-Event-ID": "abc"}), 400)["param"] == \
            "Last-Event-ID"
        past = _error(http.post(f"/v1/runs/{run_id}/stream", json={"starting_after": count + 1}), 400)
        assert past["param"] == "starting_after" and str(count) in past["message"]
        assert _error(http.post(f"/v1/runs/{run_id}/stream", json={"cursor": 1}), 400)["param"] == "cursor"
        assert _error(http.post(f"/v1/runs/{run_id}/stream", content=b"[1]"), 400)["code"] == "invalid_json"
        # Asking for a resumable run wrongly: nothing runs, nothing is stored.
        before = http.get(f"/v1/agents/{agent}/messages").json()
        assert _error(http.post("/v1/chat/completions", json={**chat(agent), "stream": False}, headers=RESUMABLE),
                      400)["code"] == "resumable_needs_stream"
        assert _error(http.post("/v1/chat/completions", json=chat(agent), headers={"X-Memproxy-Resumable": "maybe"}),
                      400)["param"] == "X-Memproxy-Resumable"
        assert http.get(f"/v1/agents/{agent}/messages").json() == before


def test_without_redis_a_resumable_request_is_a_clear_400(make_server: Any) -> None:
    server = make_server()
    agent = create_agent(server.base_url)
    response = httpx.post(server.base_url + "/v1/chat/completions", json=chat(agent), headers=RESUMABLE, timeout=30)
    error = _error(response, 400)
    assert error["code"] == "resumable_unavailable" and "MEMPROXY_REDIS_URL" in error["message"]


def test_redis_down_fails_a_resumable_request_fast_with_503(make_server: Any) -> None:
    from helpers import free_port

    server = make_server(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    agent = create_agent(server.base_url)
    response = httpx.post(server.base_url + "/v1/chat/completions", json=chat(agent), headers=RESUMABLE, timeout=30)
    error = _error(response, 503)
    assert error["code"] == "redis_unavailable" and "Redis" in error["message"]
    assert httpx.get(f"{server.base_url}/v1/agents/{agent}/messages", timeout=10).json() == []


@pytest.mark.parametrize("status", [503])
def test_an_upstream_refusal_is_an_http_error_and_the_log_ends_the_same(resumable_server: Any, status: int) -> None:
    server = resumable_server()
    agent = create_agent(server.base_url)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        response = http.post("/v1/chat/completions", json=chat(agent),
                             headers={**RESUMABLE, **sim_headers(fail_status=status)})
        assert response.status_code >= 500
        run_id = response.headers["x-memproxy-run-id"]
        logged = parse(http.get(f"/v1/runs/{run_id}/stream").text)
        assert ids(logged) == [1, 2]
        assert logged[0][1]["error"]["message"] == response.json()["error"]["message"]
        assert logged[1][1] == "[DONE]"


def test_a_retried_resumable_request_replays_the_first_run_without_a_second_log(resumable_server: Any, keys: Any,
                                                                                 redis_prefix: str) -> None:
    server = resumable_server()
    agent = create_agent(server.base_url)
    headers = {**RESUMABLE, "Idempotency-Key": "same-turn", **sim_headers(reply="only once")}
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        first = http.post("/v1/chat/completions", json=chat(agent), headers=headers)
        again = http.post("/v1/chat/completions", json=chat(agent), headers=headers)
        run_id = first.headers["x-memproxy-run-id"]
        assert again.headers["x-memproxy-run-id"] == run_id
        assert text_of(parse(again.text)) == text_of(parse(first.text)) == "only once"
        metas = {k.decode() for k in keys.scan_iter(match=redis_prefix + "runlog:*") if not k.endswith(b":events")}
        assert metas == {f"{redis_prefix}runlog:{run_id}"}
        assert len([m for m in http.get(f"/v1/agents/{agent}/messages").json()
                    if m["message_type"] == "user_message"]) == 1


def test_events_trimmed_away_are_410_and_the_kept_ones_still_resume(resumable_server: Any) -> None:
    server = resumable_server(resumable_max_events=1)  # Redis trims whole nodes of ~100 entries at a time
    agent = create_agent(server.base_url)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        done = http.post("/v1/chat/completions", json=chat(agent),
                         headers={**RESUMABLE, **sim_headers(reply_tokens=300)})
        events = parse(done.text)
        run_id = done.headers["x-memproxy-run-id"]
        error = _error(http.get(f"/v1/runs/{run_id}/stream", params={"starting_after": 0}), 410)
        assert error["code"] == "events_trimmed" and error["param"] == "starting_after"
        last = len(events) - 1
        assert parse(http.get(f"/v1/runs/{run_id}/stream", params={"starting_after": last}).text) == events[last:]
