"""`GET /metrics`, the `Server-Timing` header and the run id header, read after real turns."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

from helpers import create_agent, raw_events, sdk, sim_headers


def scrape(base_url: str, **kw: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(base_url + "/metrics", timeout=10, **kw)  # type: ignore[arg-type]
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_and_histograms_move_with_turns(make_server) -> None:
    srv = make_server()
    before = scrape(srv.base_url)
    agent = create_agent(srv.base_url)
    client = sdk(srv.base_url)
    script = [{"tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "x"}}]},
              {"reply": "ok"}]
    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "a"}],
                                   extra_headers=sim_headers(script=script))
    list(client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "b"}], stream=True))
    client.chat.completions.create(model="sim-small", messages=[{"role": "user", "content": "c"}])
    failed = httpx.post(f"{srv.base_url}/v1/chat/completions", headers=sim_headers(fail_status=503), timeout=20,
                        json={"model": agent, "messages": [{"role": "user", "content": "d"}]})
    assert failed.status_code == 503  # an upstream 503 reaches the client as 503
    after = scrape(srv.base_url)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("memproxy_requests_total", route="chat_completions", status="200") == 3
    assert moved("memproxy_requests_total", route="chat_completions", status="503") == 1
    assert moved("memproxy_requests_total", route="create_agent", status="200") == 1
    assert moved("memproxy_turns_total", status="completed") == 2
    assert moved("memproxy_turns_total", status="failed") == 1
    assert moved("memproxy_upstream_errors_total", status="503", code="overloaded") == 1
    assert moved("memproxy_added_ttft_seconds_count", route="agent") == 2
    assert moved("memproxy_added_ttft_seconds_count", route="passthrough") == 1
    assert moved("memproxy_upstream_ttft_seconds_count") == 3  # a tool step makes two calls in the first turn
    assert moved("memproxy_tool_step_seconds_count") == 1
    assert moved("memproxy_store_commit_seconds_count") == 2
    assert moved("memproxy_lock_wait_seconds_count") == 3
    assert value(after, "memproxy_turns_in_flight") == 0
    assert moved("memproxy_agent_cache_hits_total") >= 3
    assert value(after, "memproxy_agent_cache_version_reads_total") == 0  # one process: no versions to read
    assert value(after, "memproxy_resident_memory_bytes") > 10 * 1024 * 1024


def test_metrics_need_a_key_when_keys_are_set(make_server) -> None:
    srv = make_server(api_keys=("k1",))
    assert httpx.get(srv.base_url + "/metrics").status_code == 401
    assert value(scrape(srv.base_url, headers={"Authorization": "Bearer k1"}),
                 "memproxy_requests_total", route="unmatched", status="401") >= 1


def test_the_chat_paths_need_a_key_too_and_a_refusal_counts_for_no_route(make_server) -> None:
    srv = make_server(api_keys=("k1",))
    key = {"Authorization": "Bearer k1"}
    before = scrape(srv.base_url, headers=key)
    agent = httpx.post(srv.base_url + "/v1/agents/", json={"name": "t"}, headers=key, timeout=10).json()["id"]
    body = {"model": agent, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    for path in ("/v1/chat/completions", "/chat/completions", "/v1/chat/completions/chat/completions"):
        for headers in ({}, {"Authorization": "Bearer k2"}):
            refused = httpx.post(srv.base_url + path, json=body, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["error"]["code"] == "invalid_api_key"
    events, _ = raw_events(httpx.post(srv.base_url + "/v1/chat/completions", json=body, headers=key, timeout=30))
    assert events[-1] == "[DONE]"
    after = scrape(srv.base_url, headers=key)

    def moved(**labels: str) -> float:
        return value(after, "memproxy_requests_total", **labels) - value(before, "memproxy_requests_total", **labels)

    assert moved(route="unmatched", status="401") == 6
    assert moved(route="chat_completions", status="200") == 1
    assert moved(route="chat_completions", status="401") == 0


TIMING = re.compile(r"^memproxy;dur=(\d+\.\d+)(, upstream;dur=(\d+\.\d+))?$")


def test_server_timing_and_run_id_on_every_agent_and_passthrough_response(server) -> None:
    agent = create_agent(server.base_url)
    with httpx.Client(base_url=server.base_url, timeout=20) as http:
        for stream in (True, False):
            headers = sim_headers(ttft_ms=50)
            response = http.post("/v1/chat/completions", headers=headers, json={
                "model": agent, "stream": stream, "messages": [{"role": "user", "content": f"s={stream}"}]})
            assert response.status_code == 200
            match = TIMING.match(response.headers["server-timing"])
            assert match and match.group(3) is not None, response.headers["server-timing"]
            assert float(match.group(3)) >= 45  # the simulator took 50 ms to its first token
            run_id = response.headers["x-memproxy-run-id"]
            assert http.get(f"/v1/runs/{run_id}").json()["agent_id"] == agent
            if stream:
                assert raw_events(response)[0][-1] == "[DONE]"
        passthrough = http.post("/v1/chat/completions", json={"model": "sim-small", "stream": True,
                                                              "messages": [{"role": "user", "content": "p"}]})
        assert TIMING.match(passthrough.headers["server-timing"]).group(3) is not None
        assert "x-memproxy-run-id" not in passthrough.headers
        # A replayed retry names the run it replays.
        body = {"model": agent, "messages": [{"role": "user", "content": "once"}]}
        first = http.post("/v1/chat/completions", json=body, headers={"Idempotency-Key": "k-1"})
        again = http.post("/v1/chat/completions", json=body, headers={"Idempotency-Key": "k-1"})
        assert again.headers["x-memproxy-run-id"] == first.headers["x-memproxy-run-id"]
