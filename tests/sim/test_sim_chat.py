"""Non-streamed chat completions, per-request overrides and request validation."""

from __future__ import annotations

import httpx
import openai
import pytest



def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_non_stream_completion_and_usage(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model="sim-small", messages=user("hello there world"))
    assert resp.object == "chat.completion"
    assert resp.id.startswith("chatcmpl-")
    assert resp.model == "sim-small"
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content.startswith("Echo: hello there world ")
    assert len(choice.message.content.split(" ")) == 12
    assert resp.usage.completion_tokens == 12
    assert resp.usage.prompt_tokens >= 1
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 12


def test_reply_is_deterministic(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="m", messages=user("same input"))
    second = client.chat.completions.create(model="m", messages=user("same input"))
    assert first.choices[0].message.content == second.choices[0].message.content


def test_prompt_tokens_grow_with_prompt(client: openai.OpenAI) -> None:
    short = client.chat.completions.create(model="m", messages=user("hi"))
    long = client.chat.completions.create(model="m", messages=user("word " * 400))
    assert short.usage.prompt_tokens == 1
    assert long.usage.prompt_tokens == 500


def test_reply_override_keeps_spacing(client: openai.OpenAI) -> None:
    text = "Hello  there,\nfriend! "
    resp = client.chat.completions.create(model="m", messages=user("x"), extra_body={"sim": {"reply": text}})
    assert resp.choices[0].message.content == text
    assert resp.usage.completion_tokens == 3


def test_reply_tokens_header(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="m", messages=user("a b c d e f"), extra_headers={"X-Sim-Reply-Tokens": "3"}
    )
    assert resp.choices[0].message.content == "Echo: a b"


def test_body_option_beats_header(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="m",
        messages=user("x"),
        extra_headers={"X-Sim-Reply": "from header"},
        extra_body={"sim": {"reply": "from body"}},
    )
    assert resp.choices[0].message.content == "from body"


def test_list_content_parts_are_read(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "parted words"}]}]
    resp = client.chat.completions.create(model="m", messages=messages)
    assert resp.choices[0].message.content.startswith("Echo: parted words")


async def test_async_client(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.chat.completions.create(model="sim-large", messages=user("async"))
    assert resp.choices[0].message.content.startswith("Echo: async")


def test_models(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == ["sim-small", "sim-large"]
    assert all(m.owned_by == "memproxy-sim" and m.object == "model" for m in models.data)
    assert client.models.retrieve("sim-large").id == "sim-large"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_malformed_json_is_400(http: httpx.Client) -> None:
    resp = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("body", [{"model": "m"}, {"model": "m", "messages": []}, {"model": "m", "messages": "hi"}])
def test_missing_messages_is_400(http: httpx.Client, body: dict) -> None:
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "messages"


def test_unknown_sim_option_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=user("x"), extra_body={"sim": {"replyy": "typo"}})
    assert "replyy" in info.value.message


def test_unknown_path_is_404(http: httpx.Client) -> None:
    resp = http.get("/v1/nothing")
    assert resp.status_code == 404
    assert "error" in resp.json()
