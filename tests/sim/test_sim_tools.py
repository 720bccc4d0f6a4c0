"""Tool calls, multi-step scripts and the `[[sim:...]]` / `[[call:...]]` magic in user text."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import orjson

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "memory_insert",
            "description": "Insert text into a memory block.",
            "parameters": {
                "type": "object",
                "properties": {"label": {"type": "string"}, "new_str": {"type": "string"}},
                "required": ["label", "new_str"],
            },
        },
    }
]
CALL = {"name": "memory_insert", "arguments": {"label": "human", "new_str": "Likes tea"}}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def after_tool_call(text: str, call_id: str = "call_1") -> list[dict[str, Any]]:
    return [
        *user(text),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "memory_insert", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "ok"},
    ]


def test_stream_helper_assembles_tool_call(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model="m", messages=user("remember"), tools=TOOLS, extra_body={"sim": {"tool_calls": [CALL]}}
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "memory_insert"
    assert json.loads(call.function.arguments) == CALL["arguments"]


def test_tool_call_deltas_on_the_wire(http: httpx.Client) -> None:
    calls = [CALL, {"name": "memory_insert", "arguments": '{"label": "persona", "new_str": "x"}'}]
    body = {"model": "m", "messages": user("two"), "tools": TOOLS, "stream": True, "sim": {"tool_calls": calls}}
    resp = http.post("/v1/chat/completions", json=body)
    events = [line[6:] for line in resp.content.split(b"\n\n") if line.startswith(b"data: ")]
    deltas = [orjson.loads(e)["choices"][0]["delta"] for e in events[1:-2]]
    for index in (0, 1):
        mine = [d["tool_calls"][0] for d in deltas if d["tool_calls"][0]["index"] == index]
        head, *fragments = mine
        assert set(head) == {"index", "id", "type", "function"}
        assert head["type"] == "function" and head["function"]["arguments"] == ""
        assert len(fragments) >= 2
        assert all(set(f) == {"index", "function"} and set(f["function"]) == {"arguments"} for f in fragments)
        json.loads("".join(f["function"]["arguments"] for f in fragments))
    assert orjson.loads(events[-2])["choices"][0]["finish_reason"] == "tool_calls"


def test_non_stream_tool_call(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="m", messages=user("x"), tools=TOOLS, extra_headers={"X-Sim-Tool-Calls": json.dumps([CALL])}
    )
    message = resp.choices[0].message
    assert message.content is None
    assert resp.choices[0].finish_reason == "tool_calls"
    assert json.loads(message.tool_calls[0].function.arguments) == CALL["arguments"]


def test_content_then_tool_calls(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=user("x"),
            tools=TOOLS,
            stream=True,
            extra_body={"sim": {"reply": "Saving that now.", "tool_calls": [CALL], "content_then_tool_calls": True}},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Saving that now."
    assert any(c.choices[0].delta.tool_calls for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_script_steps_follow_assistant_count(client: openai.OpenAI) -> None:
    script = [{"tool_calls": [CALL]}, {"reply": "Noted, you like tea."}]
    sim = {"sim": {"script": script}}
    # Assistant turns before the last user message do not count.
    history = [*user("earlier"), {"role": "assistant", "content": "earlier answer"}]
    first = client.chat.completions.create(
        model="m", messages=[*history, *user("remember tea")], tools=TOOLS, extra_body=sim
    )
    assert first.choices[0].message.tool_calls[0].function.name == "memory_insert"
    call_id = first.choices[0].message.tool_calls[0].id
    second = client.chat.completions.create(
        model="m", messages=[*history, *after_tool_call("remember tea", call_id)], tools=TOOLS, extra_body=sim
    )
    assert second.choices[0].message.content == "Noted, you like tea."
    beyond = [*after_tool_call("remember tea"), {"role": "assistant", "content": "Noted"}]
    third = client.chat.completions.create(model="m", messages=beyond, tools=TOOLS, extra_body=sim)
    assert third.choices[0].message.content.startswith("Echo: remember tea")


def test_tool_call_ids_differ_between_steps(client: openai.OpenAI) -> None:
    sim = {"sim": {"script": [{"tool_calls": [CALL]}, {"tool_calls": [CALL]}]}}
    first = client.chat.completions.create(model="m", messages=user("x"), tools=TOOLS, extra_body=sim)
    second = client.chat.completions.create(model="m", messages=after_tool_call("x"), tools=TOOLS, extra_body=sim)
    assert first.choices[0].message.tool_calls[0].id != second.choices[0].message.tool_calls[0].id


def test_sim_magic_in_user_text(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="m", messages=user('hi [[sim:{"reply": "magic works"}]]'))
    assert resp.choices[0].message.content == "magic works"
    echo = client.chat.completions.create(model="m", messages=user('hi [[sim:{"reply_tokens": 3}]] there'))
    assert echo.choices[0].message.content == "Echo: hi there"


def test_magic_has_lowest_priority(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="m", messages=user('[[sim:{"reply": "magic"}]]'), extra_headers={"X-Sim-Reply": "header"}
    )
    assert resp.choices[0].message.content == "header"


def test_call_magic_drives_a_tool_turn(client: openai.OpenAI) -> None:
    text = 'please remember [[call:memory_insert {"label": "human", "new_str": "Likes tea"}]]'
    first = client.chat.completions.create(model="m", messages=user(text), tools=TOOLS)
    (call,) = first.choices[0].message.tool_calls
    assert call.function.name == "memory_insert"
    assert json.loads(call.function.arguments) == CALL["arguments"]
    second = client.chat.completions.create(model="m", messages=after_tool_call(text, call.id), tools=TOOLS)
    assert second.choices[0].message.content.startswith("Echo: please remember lorem")
    without_tools = client.chat.completions.create(model="m", messages=user(text))
    assert without_tools.choices[0].message.tool_calls is None


def test_bad_magic_is_400(client: openai.OpenAI) -> None:
    try:
        client.chat.completions.create(model="m", messages=user("[[sim:{broken]]"))
    except openai.BadRequestError as exc:
        assert exc.body["code"] == "invalid_sim_option"
    else:
        raise AssertionError("expected a 400")
