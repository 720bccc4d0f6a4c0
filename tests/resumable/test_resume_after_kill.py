"""A resumable run whose process is SIGKILLed mid-turn, resumed from another process sharing PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

import httpx

from helpers import create_agent, sim_headers
from sse import ids, parse, read_some

LOCK_TTL = 1.5


def test_resume_from_a_second_process_after_the_first_is_killed(processes: Any, shared_postgres: str, sim_url: str,
                                                              redis_url: str, redis_prefix: str) -> None:
    env = {"MEMPROXY_DATABASE_URL": shared_postgres, "MEMPROXY_UPSTREAM_URL": sim_url,
           "MEMPROXY_REDIS_URL": redis_url, "MEMPROXY_REDIS_PREFIX": redis_prefix,
           "MEMPROXY_LOCK_TTL": str(LOCK_TTL), "MEMPROXY_KEEPALIVE_INTERVAL": "0.2",
           "MEMPROXY_LOG_LEVEL": "warning"}
    a, b = processes("a", env), processes("b", env)
    a.wait_ready()
    b.wait_ready()
    agent = create_agent(a.base_url)
    body = {"model": agent, "messages": [{"role": "user", "content": "tell me a long story"}], "stream": True}
    headers = {"X-Memproxy-Resumable": "1", **sim_headers(reply_tokens=400, token_delay_ms=25)}
    with httpx.stream("POST", a.base_url + "/v1/chat/completions", json=body, headers=headers,
                      timeout=30) as response:
        assert response.status_code == 200
        run_id = response.headers["x-memproxy-run-id"]
        heard = read_some(response, 6)
        a.kill()  # mid-turn: hundreds of tokens still to come
    assert ids(heard) == [1, 2, 3, 4, 5, 6]

    # From B: every event A published after 2 (at least those we heard: they were written before sent),
    # then, once A's turn lock has expired, an error event and [DONE].
    resumed = parse(httpx.post(f"{b.base_url}/v1/runs/{run_id}/stream", json={"starting_after": 2},
                               timeout=60).text)
    assert ids(resumed) == list(range(3, 3 + len(resumed)))
    assert resumed[:4] == heard[2:]
    error, done = resumed[-2][1], resumed[-1][1]
    assert done == "[DONE]"
    assert error["error"]["code"] == "run_interrupted" and run_id in error["error"]["message"]
    assert all("choices" in e for _, e in resumed[:-2])
    assert len(resumed) < 400  # the turn did not finish: it was killed

    run = httpx.get(f"{b.base_url}/v1/runs/{run_id}", timeout=10).json()
    assert run["status"] == "failed"
    # Resuming again reads the same ending: the run was failed once.
    again = parse(httpx.get(f"{b.base_url}/v1/runs/{run_id}/stream", params={"starting_after": 2},
                            timeout=30).text)
    assert again == resumed
    # And the agent is free: B serves its next turn.
    after = httpx.post(b.base_url + "/v1/chat/completions", timeout=30,
                       json={**body, "stream": False, "messages": [{"role": "user", "content": "still there?"}]})
    assert after.status_code == 200, after.text
