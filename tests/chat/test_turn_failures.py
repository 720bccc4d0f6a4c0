"""Every turn ends: a turn whose history cannot be saved answers with an error, keeps nothing, and the next works.

The failure is real: the store is closed under a turn that is waiting on a slow first token, so the turn's
commit fails; the store is opened again before the next turn. (A bug in a tool no longer fails a turn: it is
a tool error the model reads, see test_custom_tools.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from helpers import agent_calls, create_agent, raw_events, sim_headers

SLOW = sim_headers(ttft_ms=1500)


@pytest.fixture
def agent(server) -> str:
    return create_agent(server.base_url)


@contextmanager
def store_closed_mid_turn(server, agent: str) -> Iterator[None]:
    """Close the store as soon as the agent's turn is in flight; open it again on the way out."""
    closed = threading.Event()

    def close_when_running() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(run.agent_id == agent for run in list(server.rt.turns.active.values())):
                server.call(server.rt.store.close())
                closed.set()
                return
            time.sleep(0.005)

    closer = threading.Thread(target=close_when_running)
    closer.start()
    try:
        yield
    finally:
        closer.join(timeout=30)
        server.call(server.rt.store.open())
    assert closed.is_set(), "the turn was never seen in flight"


def _history(base_url: str, agent: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()


def _runs(base_url: str, agent: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base_url}/v1/runs/", params={"agent_id": agent}).json()


def test_stream_gets_an_error_event_and_done_when_the_turn_cannot_be_saved(server, agent, sim_requests) -> None:
    body = {"model": agent, "stream": True, "messages": [{"role": "user", "content": "first try"}]}
    with store_closed_mid_turn(server, agent), httpx.Client(base_url=server.base_url, timeout=20) as http:
        response = http.post("/v1/chat/completions", json=body, headers=SLOW)
    assert response.status_code == 200
    events, _ = raw_events(response)
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert error["code"] == "internal_error" and error["type"] and "RuntimeError" not in error["message"]
    assert not any(e != "[DONE]" and "choices" in e and e["choices"] and e["choices"][0].get("finish_reason")
                   for e in events)
    # Nothing of the failed turn is kept, not even a completed run (the store is what failed, so the run
    # could not be written as failed either: the error event names it instead).
    assert _history(server.base_url, agent) == []
    assert "completed" not in [r["status"] for r in _runs(server.base_url, agent)]
    assert "run-" in error["message"]

    # The next turn works, and neither the cache nor the store remembers the failed one.
    ok = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=20,
                    json={"model": agent, "messages": [{"role": "user", "content": "second try"}]})
    assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] == "stop"
    sent = [m.get("content") for m in agent_calls(sim_requests)[-1]["messages"]]
    assert "second try" in sent and "first try" not in sent
    assert [m["message_type"] for m in _history(server.base_url, agent)] == ["user_message", "assistant_message"]
    assert [r["status"] for r in _runs(server.base_url, agent)] == ["completed"]


def test_non_stream_gets_a_500_in_openai_shape_when_the_turn_cannot_be_saved(server, agent) -> None:
    with httpx.Client(base_url=server.base_url, timeout=20) as http:
        with store_closed_mid_turn(server, agent):
            response = http.post("/v1/chat/completions", headers=SLOW,
                                 json={"model": agent, "messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
        # The same keep-alive connection still serves the next request.
        again = http.post("/v1/chat/completions", json={"model": agent,
                                                        "messages": [{"role": "user", "content": "again"}]})
    assert again.status_code == 200
    assert [r["status"] for r in _runs(server.base_url, agent)] == ["completed"]
    assert [m["content"] for m in _history(server.base_url, agent) if m["message_type"] == "user_message"] == ["again"]


def test_a_retry_of_a_failed_turn_runs_again(server, agent) -> None:
    body = {"model": agent, "messages": [{"role": "user", "content": "hello"}]}
    with store_closed_mid_turn(server, agent):
        first = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=20,
                           headers={**SLOW, "Idempotency-Key": "retry-after-crash"})
    assert first.status_code == 500
    second = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=20,
                        headers={"Idempotency-Key": "retry-after-crash"})
    assert second.status_code == 200, second.text
    assert len(_history(server.base_url, agent)) == 2
