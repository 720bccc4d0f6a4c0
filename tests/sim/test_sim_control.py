"""The `/sim/*` control endpoints, in-process use, and the thread runner."""

from __future__ import annotations

import gc
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from proxy.sim import SimConfig, build_sim_app, run_sim_in_thread
from proxy.sim.app import RECORD_LIMIT


def test_health(http: httpx.Client) -> None:
    assert http.get("/sim/health").json() == {"status": "ok"}


def test_requests_are_recorded(http: httpx.Client) -> None:
    assert http.delete("/sim/requests").status_code == 200
    assert http.get("/sim/requests").json() == []
    for word in ("first", "second"):
        body = {"model": "m", "messages": [{"role": "user", "content": word}], "sim": {"reply": "ok"}}
        headers = {"Authorization": "Bearer secret", "X-Sim-Ttft-Ms": "0", "X-Trace": word}
        http.post("/v1/chat/completions", json=body, headers=headers)
    recorded = http.get("/sim/requests").json()
    assert [r["messages"][0]["content"] for r in recorded] == ["first", "second"]
    last = recorded[-1]
    assert last["sim"] == {"reply": "ok"} and last["model"] == "m"
    assert last["_headers"]["x-trace"] == "second"
    assert last["_headers"]["x-sim-ttft-ms"] == "0"
    assert "authorization" not in last["_headers"]


def test_recording_keeps_the_last_200(http: httpx.Client) -> None:
    http.delete("/sim/requests")
    for i in range(RECORD_LIMIT + 5):
        http.post("/v1/embeddings", json={"model": "e", "input": str(i)})
    recorded = http.get("/sim/requests").json()
    assert len(recorded) == RECORD_LIMIT
    assert recorded[0]["input"] == "5" and recorded[-1]["input"] == str(RECORD_LIMIT + 4)


async def test_in_process_without_recording() -> None:
    app = build_sim_app(SimConfig(record=False, reply_tokens=2))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        resp = await client.post("/v1/chat/completions", json=body)
        assert resp.json()["choices"][0]["message"]["content"] == "Echo: hi"
        assert (await client.get("/sim/requests")).json() == []


async def test_a_recorded_request_is_kept_as_the_bytes_it_came_as() -> None:
    """Recorded bodies stay unparsed until asked for (a large-context body parsed is thousands of objects the
    collector walks), and come back as they were sent, with path and headers."""
    app = build_sim_app(SimConfig(reply_tokens=2))
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"line {i}"} for i in range(2001)]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
        resp = await client.post("/v1/chat/completions", json={"model": "m", "messages": messages},
                                 headers={"X-Trace": "big"})
        assert resp.status_code == 200
        [entry] = app.requests
        assert isinstance(entry[0], bytes) and not gc.is_tracked(entry[0])
        [recorded] = (await client.get("/sim/requests")).json()
    assert recorded["messages"] == messages and recorded["model"] == "m"
    assert recorded["_path"] == "/v1/chat/completions" and recorded["_headers"]["x-trace"] == "big"


def test_thread_runner_stops_cleanly() -> None:
    base_url, stop = run_sim_in_thread(SimConfig())
    parts = urlsplit(base_url)
    assert parts.path == "/v1"
    assert httpx.get(base_url + "/models").status_code == 200
    stop()
    stop()
    with pytest.raises(OSError):
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
