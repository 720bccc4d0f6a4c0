"""Embeddings: deterministic, unit length, and closer for texts that share words."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

from proxy.sim.embed import embed_text


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_sdk_embeddings_deterministic_and_normalised(client: openai.OpenAI) -> None:
    texts = ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue forecast spreadsheet"]
    first = client.embeddings.create(model="sim-embed", input=texts)
    second = client.embeddings.create(model="sim-embed", input=texts)
    vectors = [d.embedding for d in first.data]
    assert [d.index for d in first.data] == [0, 1, 2]
    assert vectors == [d.embedding for d in second.data]
    assert all(len(v) == 64 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert first.model == "sim-embed"
    assert first.usage.prompt_tokens == first.usage.total_tokens > 0


def test_float_format_matches_sdk_base64(client: openai.OpenAI, http: httpx.Client) -> None:
    sdk = client.embeddings.create(model="e", input="hello world").data[0].embedding
    raw = http.post("/v1/embeddings", json={"model": "e", "input": "hello world", "encoding_format": "float"})
    floats = raw.json()["data"][0]["embedding"]
    assert raw.json()["object"] == "list" and raw.json()["data"][0]["object"] == "embedding"
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(sdk, floats))


def test_dimensions_param(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model="e", input=["one", "two"], dimensions=16)
    assert [len(d.embedding) for d in resp.data] == [16, 16]


@pytest.mark.parametrize("bad", [None, [], [{"x": 1}], 5])
def test_bad_input_is_400(http: httpx.Client, bad: object) -> None:
    resp = http.post("/v1/embeddings", json={"model": "e", "input": bad})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "input"


def test_embed_text_is_stable_and_handles_empty() -> None:
    assert embed_text("Memory Proxy", 8) == embed_text("memory proxy", 8)
    assert embed_text("", 8) == [1.0] + [0.0] * 7
    similar = cosine(embed_text("user likes green tea", 64), embed_text("the user likes tea", 64))
    unrelated = cosine(embed_text("user likes green tea", 64), embed_text("kubernetes pod eviction", 64))
    assert similar > unrelated
