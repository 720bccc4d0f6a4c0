"""Messages and runs over real HTTP: LettaMessage shapes, order, cursors, reset, run records."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, Callable

import httpx

from memory.models import Changes, Run, new_id, utcnow


async def seed_messages(server: Any, agent_id: str, specs: list[dict[str, Any]]) -> list[str]:
    """Append messages through AgentMemory on the server's loop, as a turn would."""
    memory = server.rt.memory
    live = await memory.get(agent_id)
    made = [memory.new_message(live, spec.pop("role"), spec.pop("content", None), **spec) for spec in specs]
    await memory.commit(Changes(messages=made))
    return [m.id for m in made]


def user_turns(count: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"m{i}"} for i in range(count)]


def test_message_types(http: httpx.Client, server: Any, create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent()
    call = {"id": "call_1", "type": "function", "function": {"name": "memory_insert", "arguments": '{"a": 1}'}}
    ids = server.call(seed_messages(server, agent["id"], [
        {"role": "system", "content": "summary so far"},
        {"role": "user", "content": "hi", "run_id": "run-x"},
        {"role": "assistant", "content": "let me note that", "tool_calls": [call]},
        {"role": "tool", "content": "ok", "tool_call_id": "call_1", "name": "memory_insert"},
        {"role": "tool", "content": "boom", "tool_call_id": "call_2", "metadata": {"is_error": True}},
        {"role": "assistant", "content": "done"},
    ]))
    response = http.get(f"/v1/agents/{agent['id']}/messages", params={"order": "asc"})
    assert response.status_code == 200, response.text
    listed = response.json()
    assert [m["message_type"] for m in listed] == [
        "system_message", "user_message", "assistant_message", "tool_call_message",
        "tool_return_message", "tool_return_message", "assistant_message"]
    assert [m["id"] for m in listed] == [ids[0], ids[1], ids[2], ids[2], ids[3], ids[4], ids[5]]
    assert listed[1]["content"] == "hi" and listed[1]["run_id"] == "run-x"
    assert listed[3]["tool_call"] == {"name": "memory_insert", "arguments": '{"a": 1}', "tool_call_id": "call_1"}
    assert (listed[4]["tool_return"], listed[4]["status"], listed[4]["tool_call_id"]) == ("ok", "success", "call_1")
    assert listed[5]["status"] == "error"
    assert all(m["date"].endswith("+00:00") for m in listed)
    newest_first = http.get(f"/v1/agents/{agent['id']}/messages/").json()
    assert newest_first == listed[::-1]
    assert http.get(f"/v1/agents/{agent['id']}").json()["message_ids"] == ids


def test_message_cursors_both_orders(http: httpx.Client, server: Any,
                                     create_agent: Callable[..., dict[str, Any]]) -> None:
    agent = create_agent()
    ids = server.call(seed_messages(server, agent["id"], user_turns(6)))
    url = f"/v1/agents/{agent['id']}/messages"

    def page(**params: Any) -> list[str]:
        response = http.get(url, params=params)
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json()]

    assert page(order="asc") == ids
    assert page() == ids[::-1]
    assert page(order="asc", limit=2) == ids[:2]
    assert page(order="asc", limit=2, after=ids[1]) == ids[2:4]
    assert page(order="asc", before=ids[2]) == ids[:2]
    assert page(order="desc", limit=2) == [ids[5], ids[4]]
    assert page(order="desc", limit=2, after=ids[4]) == [ids[3], ids[2]]
    assert page(order="desc", before=ids[3]) == [ids[5], ids[4]]
    # Walking every page newest first with `after` visits each message once.
    seen: list[str] = []
    cursor: dict[str, str] = {}
    while batch := page(order="desc", limit=4, **cursor):
        seen += batch
        cursor = {"after": batch[-1]}
    assert seen == ids[::-1]
    # And back again with `before`, which pages towards the newest.
    seen, cursor = [], {"before": ids[0]}
    while batch := page(order="desc", limit=4, **cursor):
        seen = batch + seen
        cursor = {"before": batch[0]}
    assert seen == ids[:0:-1]
    assert page(order="asc", before=ids[4], limit=2) == ids[2:4]
    assert http.get(url, params={"before": "message-nope"}).status_code == 422


def test_reset_keeps_history_listable(http: httpx.Client, server: Any,
                                      create_agent: Callable[..., dict[str, Any]],
                                      expect_error: Callable[..., Any]) -> None:
    agent = create_agent()
    ids = server.call(seed_messages(server, agent["id"], user_turns(3)))
    assert http.get(f"/v1/agents/{agent['id']}").json()["message_ids"] == ids
    response = http.patch(f"/v1/agents/{agent['id']}/reset-messages")
    assert response.status_code == 200, response.text
    assert response.json()["message_ids"] == []
    assert http.get(f"/v1/agents/{agent['id']}").json()["message_ids"] == []
    listed = http.get(f"/v1/agents/{agent['id']}/messages", params={"order": "asc"}).json()
    assert [m["id"] for m in listed] == ids
    expect_error(http.patch(f"/v1/agents/agent-{uuid.uuid4()}/reset-messages"), 404, "not_found")
    expect_error(http.get(f"/v1/agents/agent-{uuid.uuid4()}/messages"), 404, "not_found")


def test_runs(http: httpx.Client, server: Any, create_agent: Callable[..., dict[str, Any]],
              expect_error: Callable[..., Any]) -> None:
    agent = create_agent()
    start = utcnow()
    runs = [Run(id=new_id("run"), agent_id=agent["id"], created_at=start + timedelta(seconds=i)) for i in range(3)]
    finished = runs[2]
    finished.status, finished.stop_reason, finished.steps = "completed", "end_turn", 2
    finished.usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    finished.timings = {"ttft_ms": 1.5, "upstream_ms": 20.0, "tool_ms": 3.0, "total_ms": 30.0}
    finished.completed_at = start + timedelta(seconds=3)
    server.call(server.rt.store.commit(Changes(runs=runs)))

    got = http.get(f"/v1/runs/{finished.id}")
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["id"], body["agent_id"], body["status"], body["stop_reason"], body["steps"]) == \
        (finished.id, agent["id"], "completed", "end_turn", 2)
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert body["timings"] == finished.timings
    assert (body["ttft_ns"], body["total_duration_ns"]) == (1_500_000, 30_000_000)
    assert body["completed_at"] is not None and body["created_at"] < body["completed_at"]
    assert http.get(f"/v1/runs/{finished.id}/").json() == body
    running = http.get(f"/v1/runs/{runs[0].id}").json()
    assert (running["status"], running["completed_at"], running["usage"]["total_tokens"]) == ("running", None, 0)

    listed = [r["id"] for r in http.get("/v1/runs/", params={"agent_id": agent["id"]}).json()]
    assert listed == [r.id for r in reversed(runs)]
    next_page = http.get("/v1/runs", params={"agent_id": agent["id"], "limit": 1, "after": runs[2].id}).json()
    assert [r["id"] for r in next_page] == [runs[1].id]
    previous = http.get("/v1/runs", params={"agent_id": agent["id"], "limit": 1, "before": runs[0].id}).json()
    assert [r["id"] for r in previous] == [runs[1].id]
    expect_error(http.get(f"/v1/runs/run-{uuid.uuid4()}"), 404, "not_found")
    expect_error(http.get("/v1/runs/bogus"), 404, "not_found")
