"""The agent route end to end: memory in the prompt, server tools, persistence, restarts."""

from __future__ import annotations


import httpx
import openai
import pytest

from helpers import agent_calls, create_agent, sdk, sim_headers, system_of


def test_memory_edit_shapes_next_turn_and_survives_restart(make_server, sim_requests) -> None:
    srv = make_server()
    agent = create_agent(srv.base_url)
    client = sdk(srv.base_url)
    script = [{"tool_calls": [{"name": "memory_insert",
                               "arguments": {"label": "human", "new_str": "Lives in Lisbon"}}]},
              {"reply": "Noted, you live in Lisbon."}]
    first = client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "I live in Lisbon"}],
                                           extra_headers=sim_headers(**{"script": script}))
    assert first.choices[0].message.content == "Noted, you live in Lisbon."
    assert first.choices[0].message.tool_calls is None  # server tools never reach the client
    calls = agent_calls(sim_requests)
    assert len(calls) == 2
    assert "Lives in Lisbon" not in system_of(calls[0])
    assert calls[1]["messages"][-1]["role"] == "tool"
    assert "updated" in calls[1]["messages"][-1]["content"]

    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "Where do I live?"}])
    assert "Lives in Lisbon" in system_of(agent_calls(sim_requests)[-1])

    data_dir = srv.settings.data_dir
    srv.stop()
    again = make_server(data_dir=data_dir)
    sdk(again.base_url).chat.completions.create(model=agent, messages=[{"role": "user", "content": "still?"}])
    last = agent_calls(sim_requests)[-1]
    assert "Name: Ada\nLives in Lisbon" in system_of(last)
    # The history came back too: both earlier turns precede the new input.
    roles = [m["role"] for m in last["messages"][1:]]
    assert roles.count("user") == 3 and roles[-1] == "user"


def test_prompt_prefix_is_byte_stable_between_turns(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    for text in ("one", "two", "three"):
        client.chat.completions.create(model=agent, messages=[{"role": "user", "content": text}])
    systems = {system_of(r) for r in agent_calls(sim_requests)}
    assert len(systems) == 1
    prompt = systems.pop()
    assert prompt.startswith("You are a test agent.\n\n<memory_blocks>")
    assert "<human>\n<description>" in prompt and "- chars_current=9\n- chars_limit=200" in prompt
    assert "<policy>" in prompt and "- read_only=true" in prompt
    assert "<memory_metadata>" in prompt and "The current system date is:" in prompt


@pytest.mark.parametrize("call,needle", [
    ({"name": "memory_replace", "arguments": {"label": "policy", "old_str": "kind", "new_str": "rude"}}, "read-only"),
    ({"name": "memory_insert", "arguments": {"label": "human", "new_str": "x" * 500}}, "limit of 200"),
    ({"name": "memory_replace", "arguments": {"label": "human", "old_str": "Bob", "new_str": "Al"}}, "not found"),
    ({"name": "memory_insert", "arguments": {"label": "nope", "new_str": "x"}}, "no memory block with label"),
    ({"name": "memory_insert", "arguments": "{not json"}, "not valid JSON"),
])
def test_tool_errors_reach_the_model_and_the_turn_completes(server, sim_requests, call, needle) -> None:
    agent = create_agent(server.base_url)
    script = [{"tool_calls": [call]}, {"reply": "ok then"}]
    out = sdk(server.base_url).chat.completions.create(
        model=agent, messages=[{"role": "user", "content": "edit"}], extra_headers=sim_headers(**{"script": script}))
    assert out.choices[0].message.content == "ok then"
    tool_message = agent_calls(sim_requests)[-1]["messages"][-1]
    assert tool_message["role"] == "tool" and needle in tool_message["content"]
    blocks = httpx.get(f"{server.base_url}/v1/agents/{agent}/core-memory/blocks").json()
    values = {b["label"]: b["value"] for b in blocks}
    assert values == {"human": "Name: Ada", "persona": "I am helpful.", "policy": "Be kind."}


def test_parallel_tool_calls_run_in_order(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    calls = [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "likes tea"}},
             {"name": "memory_replace", "arguments": {"label": "human", "old_str": "likes tea",
                                                      "new_str": "likes green tea"}}]
    sdk(server.base_url).chat.completions.create(
        model=agent, messages=[{"role": "user", "content": "tea"}],
        extra_headers=sim_headers(**{"script": [{"tool_calls": calls}, {"reply": "done"}]}))
    block = httpx.get(f"{server.base_url}/v1/agents/{agent}/core-memory/blocks/human").json()
    assert block["value"] == "Name: Ada\nlikes green tea"


def test_max_steps_ends_with_length(make_server) -> None:
    srv = make_server(max_steps=3)
    agent = create_agent(srv.base_url)
    loop = [{"tool_calls": [{"name": "memory_insert", "arguments": {"label": "persona", "new_str": "x"}}]}] * 5
    out = sdk(srv.base_url).chat.completions.create(
        model=agent, messages=[{"role": "user", "content": "go"}], extra_headers=sim_headers(**{"script": loop}))
    assert out.choices[0].finish_reason == "length"
    runs = httpx.get(f"{srv.base_url}/v1/runs/", params={"agent_id": agent}).json()
    assert runs[0]["stop_reason"] == "max_steps"


def test_new_input_is_only_what_follows_the_last_assistant_message(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "hello"}])
    transcript = [{"role": "system", "content": "Speak briefly."},
                  {"role": "user", "content": "hello"},
                  {"role": "assistant", "content": "a different copy of the reply"},
                  {"role": "user", "content": "second"}]
    client.chat.completions.create(model=agent, messages=transcript)
    sent = agent_calls(sim_requests)[-1]["messages"]
    assert sent[1] == {"role": "system", "content": "Speak briefly."}
    assert [m["content"] for m in sent if m["role"] == "user"] == ["hello", "second"]
    stored = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
    assert [m["content"] for m in stored if m["message_type"] == "user_message"] == ["hello", "second"]
    assert not any("Speak briefly" in str(m.get("content")) for m in stored)


@pytest.mark.parametrize("messages,status,code", [
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}], 400, "no_new_input"),
    ([{"role": "system", "content": "only instructions"}], 400, "no_new_input"),
])
def test_requests_without_new_input_are_refused(server, messages, status, code) -> None:
    agent = create_agent(server.base_url)
    response = httpx.post(server.base_url + "/v1/chat/completions", json={"model": agent, "messages": messages})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_unknown_agent_is_model_not_found(server) -> None:
    response = httpx.post(server.base_url + "/v1/chat/completions",
                          json={"model": "agent-00000000-0000-4000-8000-000000000000",
                                "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and set(error) == {"message", "type", "param", "code"}


def test_n_greater_than_one_is_refused(server) -> None:
    agent = create_agent(server.base_url)
    with pytest.raises(openai.BadRequestError) as info:
        sdk(server.base_url).chat.completions.create(model=agent, n=2, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 400 and info.value.body["param"] == "n"


def test_sampling_params_override_agent_defaults(server, sim_requests) -> None:
    agent = create_agent(server.base_url, temperature=0.2)
    client = sdk(server.base_url)
    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "a"}])
    assert agent_calls(sim_requests)[-1]["temperature"] == 0.2
    client.chat.completions.create(model=agent, temperature=0.9, max_tokens=33, seed=7,
                                   messages=[{"role": "user", "content": "b"}], extra_body={"call": {"id": "x"}})
    sent = agent_calls(sim_requests)[-1]
    assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.9, 33, 7)
    assert "call" not in sent  # unknown client fields are not forwarded


def test_runs_record_status_steps_usage_and_timings(server) -> None:
    agent = create_agent(server.base_url)
    script = [{"tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "x"}}]},
              {"reply": "fine"}]
    sdk(server.base_url).chat.completions.create(model=agent, messages=[{"role": "user", "content": "hi"}],
                                                 extra_headers=sim_headers(**{"script": script}))
    runs = httpx.get(f"{server.base_url}/v1/runs/", params={"agent_id": agent}).json()
    assert len(runs) == 1
    run = httpx.get(f"{server.base_url}/v1/runs/{runs[0]['id']}").json()
    assert run["status"] == "completed" and run["stop_reason"] == "end_turn"
    assert run["steps"] == 2 and run["usage"]["total_tokens"] > 0
    for key in ("ttft_ms", "upstream_ms", "tool_ms", "total_ms"):
        assert run["timings"][key] >= 0
    messages = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
    kinds = [m["message_type"] for m in messages]
    assert kinds == ["user_message", "tool_call_message", "tool_return_message", "assistant_message"]
    assert all(m["run_id"] == run["id"] for m in messages)


def test_memory_edits_are_in_the_store_when_the_client_reads_after_the_reply(server) -> None:
    # Shows read-your-writes through the store; that the write finishes before [DONE] itself is not
    # observable from outside here (reads queue behind writes on the store's one worker thread).
    agent = create_agent(server.base_url)
    human = httpx.get(f"{server.base_url}/v1/agents/{agent}/core-memory/blocks/human").json()
    script = [{"tool_calls": [{"name": "memory_insert", "arguments": {"label": "human", "new_str": "durable"}}]},
              {"reply": "saved"}]
    for stream in (True, False):
        reply = sdk(server.base_url).chat.completions.create(
            model=agent, messages=[{"role": "user", "content": f"remember (stream={stream})"}], stream=stream,
            extra_headers=sim_headers(script=script))
        if stream:
            assert [c for c in reply][-1].choices[0].finish_reason == "stop"
        # Read the database itself, not the live cache the next turn would see.
        stored = server.call(server.rt.store.get_block(human["id"]))
        assert stored.value.count("durable") == (1 if stream else 2)
