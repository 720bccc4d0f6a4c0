"""Clients that resend their whole transcript, and the route aliases real clients reach memproxy by."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from client_support import WEATHER_TOOL, check_chunks, history, upstream_agent_calls, user_texts, weather
from helpers import create_agent, raw_events, sim_headers

SYSTEM = {"role": "system", "content": "You are talking to Ada through a kiosk. Answer in one sentence."}


def altered(text: str, turn: int) -> Any:
    """The client's copy of an earlier assistant turn, changed the way real clients change it."""
    variants = [
        lambda t: t[: max(1, len(t) // 2)],  # cut off by a barge-in
        lambda t: "  " + t.upper() + "\n",  # reformatted for display
        lambda t: [{"type": "text", "text": t}],  # content parts instead of a string
        lambda t: t.replace(" ", "  ") + " [edited]",
        lambda t: "",  # a client that keeps only the audio
    ]
    return variants[turn % len(variants)](text)


def test_full_transcript_resent_for_ten_turns_adds_one_user_message_per_turn(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    transcript: list[dict[str, Any]] = []
    sent: list[str] = []
    for turn in range(10):
        user = f"Turn {turn}: tell me something about the number {turn * 7}."
        sent.append(user)
        messages = [SYSTEM, *transcript, {"role": "user", "content": user}]
        reply = f"Reply {turn}: {turn * 7} is a fine number."
        headers = sim_headers(reply=reply)
        if turn == 4:  # one turn goes through a client tool round trip, transcript and all
            script = [{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}, {"reply": reply}]
            headers = sim_headers(script=script)
            asked = client.chat.completions.create(model=agent, messages=messages, tools=[WEATHER_TOOL],
                                                   extra_headers=headers)
            call = asked.choices[0].message.tool_calls[0]
            messages += [{"role": "assistant", "content": None,
                          "tool_calls": [{"id": call.id, "type": "function",
                                          "function": {"name": call.function.name,
                                                       "arguments": call.function.arguments}}]},
                         {"role": "tool", "tool_call_id": call.id, "content": json.dumps(weather("Oslo"))}]
        if turn % 2:
            stream = client.chat.completions.create(model=agent, messages=messages, stream=True,
                                                    tools=[WEATHER_TOOL] if turn == 4 else openai.omit,
                                                    extra_headers=headers)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        else:
            done = client.chat.completions.create(model=agent, messages=messages, extra_headers=headers,
                                                  tools=[WEATHER_TOOL] if turn == 4 else openai.omit)
            text = done.choices[0].message.content
        assert text == reply
        assert user_texts(server.base_url, agent) == sent, f"after turn {turn}"
        # Everything the client resent stays out: upstream sees each user turn once.
        upstream = upstream_agent_calls(sim_requests())[-1]["messages"]
        assert [m["content"] for m in upstream if m["role"] == "user"] == sent
        transcript = messages[1:] + [{"role": "assistant", "content": altered(text, turn)}]
    stored = history(server.base_url, agent)
    assert [m["content"] for m in stored if m["message_type"] == "assistant_message"] == [
        f"Reply {t}: {t * 7} is a fine number." for t in range(10)]  # the agent keeps its own words
    assert sum(m["message_type"] == "tool_return_message" for m in stored) == 1
    assert SYSTEM["content"] not in json.dumps(stored)


ALIASES = ["/v1/chat/completions", "/chat/completions", "/v1/chat/completions/chat/completions",
           "/v1/voice-beta/{agent}/chat/completions"]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("path", ALIASES)
def test_route_alias_answers_like_the_main_route(server, path: str, stream: bool) -> None:
    agent = create_agent(server.base_url)
    # voice-beta takes the agent from the path; its clients put their own model name in the body.
    model = "gpt-4o-mini" if "{agent}" in path else agent
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(server.base_url + path.format(agent=agent), json=body, timeout=30,
                          headers=sim_headers(reply="Alias reply."))
    assert response.status_code == 200, response.text
    if stream:
        events, _ = raw_events(response)
        assert events[-1] == "[DONE]"
        seen = check_chunks(events[:-1], agent, usage=True)
        assert seen["text"] == "Alias reply." and seen["finish"] == "stop"
    else:
        completion = response.json()
        assert completion["model"] == agent and completion["choices"][0]["message"]["content"] == "Alias reply."
    assert user_texts(server.base_url, agent) == ["hello"]


@pytest.mark.parametrize("base", ["", "/v1/chat/completions", "/v1/voice-beta/{agent}"])
def test_sdk_base_urls_that_land_on_aliases(server, base: str) -> None:
    """Base URLs people paste into SDKs: the server root, the full endpoint, Letta's voice path."""
    agent = create_agent(server.base_url)
    client = openai.OpenAI(base_url=server.base_url + base.format(agent=agent), api_key="unused", max_retries=0)
    chunks = list(client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, extra_headers=sim_headers(reply="Via alias.")))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Via alias."
    assert user_texts(server.base_url, agent) == ["hi"]


def test_barge_in_then_full_transcript_does_not_repeat_the_interrupted_user_turn(server) -> None:
    """Voice clients drop a reply the caller talked over and send the next request without it.

    The request then ends with two user messages after the last assistant one; the first of them is
    already in the agent's history (from the interrupted turn) and must not be stored again (DESIGN.md,
    rule 2: memproxy never re-appends history it already holds).
    """
    agent = create_agent(server.base_url)
    url = server.base_url + "/v1/chat/completions"
    first, interrupted, follow_up = "What's on my calendar?", "And tomorrow?", "Actually, just today."
    done = httpx.post(url, timeout=30, headers=sim_headers(reply="You have two meetings."),
                      json={"model": agent, "messages": [SYSTEM, {"role": "user", "content": first}]})
    assert done.status_code == 200, done.text
    slow = sim_headers(reply="Tomorrow you have" + " a long list" * 8, token_delay_ms=50)
    body = {"model": agent, "stream": True,
            "messages": [SYSTEM, {"role": "user", "content": first},
                         {"role": "assistant", "content": "You have two meetings."},
                         {"role": "user", "content": interrupted}]}
    with httpx.stream("POST", url, json=body, headers=slow, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                break  # the caller talks over the first words: the client hangs up on this reply
    # The next request carries the whole transcript; the interrupted reply was never spoken.
    messages = [*body["messages"], {"role": "user", "content": follow_up}]
    again = httpx.post(url, timeout=30, headers=sim_headers(reply="Today: two meetings."),
                       json={"model": agent, "messages": messages})
    assert again.status_code == 200, again.text
    assert again.json()["choices"][0]["message"]["content"] == "Today: two meetings."
    assert user_texts(server.base_url, agent) == [first, interrupted, follow_up]
