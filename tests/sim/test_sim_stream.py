"""Streamed chat completions: what the SDK parses and what goes over the wire."""

from __future__ import annotations

import time

import httpx
import openai
import orjson



def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def sse_events(raw: bytes) -> list[bytes]:
    return [line[len(b"data: "):] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]


def test_stream_with_usage_matches_non_stream(client: openai.OpenAI) -> None:
    messages = user("stream me please")
    chunks = list(
        client.chat.completions.create(
            model="sim-small", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1 and with_usage[0] is chunks[-1]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 12
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.chat.completions.create(model="sim-small", messages=messages)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_raw_sse_is_spec_exact(http: httpx.Client) -> None:
    body = {
        "model": "sim-large",
        "messages": user("raw bytes"),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    resp = http.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.content.endswith(b"data: [DONE]\n\n")
    events = sse_events(resp.content)
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert len({c["created"] for c in chunks}) == 1
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"sim-large"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] is not None]
    assert len(finish) == 1 and finish[0] is chunks[-2]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    assert len(deltas) == 12 and all(set(d) == {"content"} for d in deltas)
    assert deltas[1]["content"].startswith(" ")


def test_no_usage_key_without_include_usage(http: httpx.Client) -> None:
    resp = http.post("/v1/chat/completions", json={"model": "m", "messages": user("x"), "stream": True})
    chunks = [orjson.loads(e) for e in sse_events(resp.content)[:-1]]
    assert all("usage" not in c for c in chunks)


async def test_async_stream_with_delays(aclient: openai.AsyncOpenAI) -> None:
    start = time.perf_counter()
    stream = await aclient.chat.completions.create(
        model="m",
        messages=user("slow"),
        stream=True,
        extra_body={"sim": {"ttft_ms": 60, "token_delay_ms": 5, "reply_tokens": 4}},
    )
    first_content_at = None
    words = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first_content_at = first_content_at or time.perf_counter()
            words.append(chunk.choices[0].delta.content)
    assert first_content_at - start >= 0.06
    assert time.perf_counter() - start >= 0.06 + 3 * 0.005
    assert words == ["Echo:", " slow", " lorem", " ipsum"]


def test_non_stream_honours_delays(client: openai.OpenAI) -> None:
    start = time.perf_counter()
    client.chat.completions.create(model="m", messages=user("x"), extra_headers={"X-Sim-Ttft-Ms": "50"})
    assert time.perf_counter() - start >= 0.05
