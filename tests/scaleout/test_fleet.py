"""Three replicas on one PostgreSQL schema and one Redis behave like one server."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from bench.procs import agent_cache_counts
from replicas import Fleet
from helpers import agent_calls, create_agent, sim_headers, system_of


def ask(base_url: str, agent: str, text: str, timeout: float = 60, **headers: str) -> httpx.Response:
    return httpx.post(base_url + "/v1/chat/completions", timeout=timeout, headers=headers,
                      json={"model": agent, "messages": [{"role": "user", "content": text}]})


def history(fleet: Fleet, agent: str) -> list[tuple[str, str | None, str | None]]:
    rows = fleet.query("SELECT role, content, run_id FROM messages WHERE agent_id = $1 ORDER BY seq", agent)
    return [(r["role"], r["content"], r["run_id"]) for r in rows]


def test_concurrent_turns_to_one_agent_are_serialized_across_replicas(fleet3: Fleet) -> None:
    agent = create_agent(fleet3.replicas[0].base_url)

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=200)) as client:
            async def one(i: int) -> httpx.Response:
                replica = fleet3.replicas[i % 3]
                return await client.post(replica.base_url + "/v1/chat/completions",
                                         headers=sim_headers(reply=f"answer-{i}"),
                                         json={"model": agent, "messages": [{"role": "user", "content": f"msg-{i}"}]})
            return await asyncio.gather(*(one(i) for i in range(100)))

    responses = asyncio.run(send_all())
    assert [r.status_code for r in responses] == [200] * 100, [r.text for r in responses if r.status_code != 200][:3]
    assert [r.json()["choices"][0]["message"]["content"] for r in responses] == [f"answer-{i}" for i in range(100)]
    rows = history(fleet3, agent)
    assert len(rows) == 200
    # Each user message is followed by its own reply, in the same run: no turn saw another's half.
    for (role, content, run), (next_role, reply, next_run) in zip(rows[::2], rows[1::2]):
        assert role == "user" and next_role == "assistant" and run == next_run
        assert reply == "answer-" + content.removeprefix("msg-")
    assert sorted(c for r, c, _ in rows if r == "user") == sorted(f"msg-{i}" for i in range(100))


def test_block_edited_through_one_replica_is_in_the_next_prompt_on_another(fleet3: Fleet, sim_requests: Any) -> None:
    a, b, c = (r.base_url for r in fleet3.replicas)
    agent = create_agent(a)
    assert ask(b, agent, "warm b's cache").status_code == 200
    assert ask(c, agent, "warm c's cache").status_code == 200
    edited = httpx.patch(f"{a}/v1/agents/{agent}/core-memory/blocks/human", json={"value": "Name: Grace"}, timeout=10)
    assert edited.status_code == 200
    assert ask(b, agent, "who am I?").status_code == 200
    assert "Name: Grace" in system_of(agent_calls(sim_requests)[-1])

    # A block shared by two agents: edited through C, both agents' next turns on B see it.
    other = create_agent(a)
    shared = httpx.post(f"{a}/v1/blocks", json={"label": "team", "value": "Team: red"}, timeout=10).json()["id"]
    for who in (agent, other):
        assert httpx.patch(f"{a}/v1/agents/{who}/core-memory/blocks/attach/{shared}", timeout=10).status_code == 200
        assert ask(b, who, "warm").status_code == 200
    assert httpx.patch(f"{c}/v1/blocks/{shared}", json={"value": "Team: blue"}, timeout=10).status_code == 200
    for who in (agent, other):
        assert ask(b, who, "which team?").status_code == 200
        prompt = system_of(agent_calls(sim_requests)[-1])
        assert "Team: blue" in prompt and "Team: red" not in prompt


def test_memory_tool_edit_on_one_replica_is_seen_by_the_next_turn_on_another(fleet3: Fleet, sim_requests: Any) -> None:
    a, b, _ = (r.base_url for r in fleet3.replicas)
    agent = create_agent(a)
    assert ask(b, agent, "warm").status_code == 200
    call = [{"name": "core_memory_append", "arguments": {"label": "human", "content": "Likes tea."}}]
    assert ask(a, agent, "remember", **sim_headers(script=[{"tool_calls": call}, {"reply": "noted"}])).status_code == 200
    assert ask(b, agent, "what do I like?").status_code == 200
    assert "Likes tea." in system_of(agent_calls(sim_requests)[-1])


def test_retry_sent_to_another_replica_while_the_turn_runs_joins_it(fleet3: Fleet, sim_requests: Any) -> None:
    a, b, c = (r.base_url for r in fleet3.replicas)
    agent = create_agent(a)
    headers = {"Idempotency-Key": "order-66", **sim_headers(ttft_ms=1500, reply="the one answer")}
    first: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: first.setdefault("r", ask(a, agent, "place the order", **headers)))
    thread.start()
    # Wait until A's turn is at the upstream (so it holds the agent's lock), then retry through B.
    while not agent_calls(sim_requests):
        threading.Event().wait(0.02)
    run_id = fleet3.redis_running_run(agent)
    assert httpx.get(f"{c}/v1/runs/{run_id}", timeout=10).json()["status"] == "running"  # in flight, seen from C
    retry = ask(b, agent, "place the order", **headers)
    thread.join()
    assert first["r"].status_code == retry.status_code == 200
    assert retry.json()["choices"][0]["message"]["content"] == "the one answer"
    assert first["r"].json()["choices"][0]["message"]["content"] == "the one answer"
    assert retry.headers["X-Memproxy-Run-Id"] == first["r"].headers["X-Memproxy-Run-Id"] == run_id
    # ...and once more through C after it finished: replayed from the store, still one turn.
    again = ask(c, agent, "place the order", **headers)
    assert again.json()["choices"][0]["message"]["content"] == "the one answer"
    assert [role for role, _, _ in history(fleet3, agent)] == ["user", "assistant"]
    assert len(agent_calls(sim_requests)) == 1
    assert httpx.get(f"{c}/v1/runs/{run_id}", timeout=10).json()["status"] == "completed"


def test_bad_input_is_refused_on_every_replica_without_writing(fleet3: Fleet) -> None:
    agent = create_agent(fleet3.replicas[0].base_url)
    for replica in fleet3.replicas:
        out = httpx.post(replica.base_url + "/v1/chat/completions", timeout=10,
                         json={"model": agent, "messages": [{"role": "assistant", "content": "no user"}]})
        assert out.status_code == 400 and out.json()["error"]["code"] == "no_new_input"
    assert history(fleet3, agent) == []
    assert not [k for k in fleet3.redis_keys() if agent.encode() in k and b":turn:" in k]


def test_the_prompt_stays_byte_stable_as_the_agent_moves_between_replicas(fleet3: Fleet, sim_requests: Any) -> None:
    agent = create_agent(fleet3.replicas[0].base_url)
    for i, replica in enumerate([*fleet3.replicas, fleet3.replicas[0]]):
        assert ask(replica.base_url, agent, f"hop-{i}").status_code == 200
    systems = [system_of(r) for r in agent_calls(sim_requests)]
    assert len(systems) == 4 and len(set(systems)) == 1  # the upstream's prompt cache keeps hitting


def test_a_turn_failed_upstream_on_one_replica_runs_anew_on_another_without_a_second_user_message(
        fleet3: Fleet, sim_requests: Any) -> None:
    a, b, _ = (r.base_url for r in fleet3.replicas)
    agent = create_agent(a)
    failed = ask(a, agent, "try me", **{"Idempotency-Key": "flaky", **sim_headers(fail_status=500)})
    assert failed.status_code >= 500
    retry = ask(b, agent, "try me", **{"Idempotency-Key": "flaky", **sim_headers(reply="second time lucky")})
    assert retry.status_code == 200 and retry.json()["choices"][0]["message"]["content"] == "second time lucky"
    assert [(r, c) for r, c, _ in history(fleet3, agent)] == [("user", "try me"), ("assistant", "second time lucky")]
    statuses = sorted(r["status"] for r in fleet3.query("SELECT status FROM runs WHERE agent_id = $1", agent))
    assert statuses == ["completed", "failed"]


def test_compaction_of_an_agent_moving_between_replicas_runs_once(fleet3: Fleet, sim_requests: Any) -> None:
    replicas = [r.base_url for r in fleet3.replicas]
    agent = create_agent(replicas[0], context_window_limit=2000)
    for turn in range(30):
        # The marker slows only the summary calls (their transcript ends with this text; the turns' own header
        # wins for them): a compaction is still running when the next turn arrives at another replica.
        text = f"turn {turn}: " + " ".join(f"fact{turn}-{i} is worth remembering" for i in range(12))
        text += ' [[sim:{"ttft_ms": 400}]]'
        out = ask(replicas[turn % 3], agent, text, **sim_headers(reply=f"noted {turn}", ttft_ms=0))
        assert out.status_code == 200, out.text
    rows = fleet3.query("SELECT seq, metadata, in_context FROM messages WHERE agent_id = $1 AND role = 'system' "
                        "ORDER BY seq", agent)
    import orjson

    hidden = [orjson.loads(r["metadata"])["hidden"] for r in rows]
    assert len(hidden) >= 2, "no compaction happened"
    # Each summary folds the previous one in: one chain, no two compactions of the same messages.
    assert hidden == sorted(set(hidden)) and sum(r["in_context"] for r in rows) == 1
    # ...and the model was asked for each summary once: no replica compacted what another was compacting.
    summary_calls = [r for r in sim_requests() if not r["messages"][0]["content"].startswith("You are a test agent.")]
    assert len(summary_calls) == len(rows)
    users = [c for r, c, _ in history(fleet3, agent) if r == "user"]
    assert len(users) == 30 and len(set(users)) == 30


def _loads(base_url: str) -> tuple[float, float, float]:
    """(agents loaded from the store, of which brought up to date from a stale copy, of which after reading their
    version from Redis) by one replica so far."""
    found = agent_cache_counts(base_url)
    return found["loads"], found["refreshes"], found["version_reads"]


def test_an_agent_back_on_a_replica_is_brought_up_to_date_with_only_what_others_added(
        fleet3: Fleet, sim_requests: Any) -> None:
    replicas = [r.base_url for r in fleet3.replicas]
    agent = create_agent(replicas[0])
    said: list[tuple[str, str]] = []
    for turn in range(9):
        url = replicas[turn % 3]
        before = _loads(url)
        out = ask(url, agent, f"hop {turn}", **sim_headers(reply=f"ack {turn}"))
        assert out.status_code == 200, out.text
        said += [("user", f"hop {turn}"), ("assistant", f"ack {turn}")]
        more = tuple(after - was for after, was in zip(_loads(url), before))
        if turn >= 3:
            # The replica had a copy from its last turn, which the others' turns made stale: it loaded the agent
            # once, keeping that copy's history and reading only what came after it. Its version was known without
            # asking Redis (announced when the copy was dropped, or read by the lease), and the version it loaded
            # at spared the turn's lease a second load.
            assert more == (1, 1, 0), turn
    # Every call saw the whole history so far, whichever replica sent it and however it got there.
    calls = [c for c in agent_calls(sim_requests) if any(m.get("content") == "hop 0" for m in c["messages"])]
    assert len(calls) == 9
    for turn, call in enumerate(calls):
        assert [(m["role"], m["content"]) for m in call["messages"][1:]] == [*said[:2 * turn], said[2 * turn]]
