"""Embedding failures, lazy vector sizes, re-embedding, and HttpEmbedder against a real HTTP server."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from memory.longterm.api import LongTermMemory
from memory.longterm import EmbeddingError, HttpEmbedder, LanceLongTermMemory, RecallRecord
from memory.models import new_id


async def test_failed_embedding_still_stores_and_embed_pending_fixes_it(
    lt: LongTermMemory, embedder: Any, agent_id: str
) -> None:
    embedder.down = True
    [p] = await lt.add_passages(agent_id, [("the ferry leaves at seven", ["travel"])])
    hits = await lt.search_passages(agent_id, "ferry")  # the query cannot be embedded either
    assert [h.record.id for h in hits] == [p.id] and hits[0].search_mode == "fts"
    embedder.down = False
    hits = await lt.search_passages(agent_id, "ferry")
    assert hits[0].vector_rank is None and hits[0].fts_rank == 1  # no vector yet
    assert await lt.embed_pending() == 1
    hits = await lt.search_passages(agent_id, "ferry")
    assert hits[0].vector_rank == 1 and hits[0].fts_rank == 1
    assert await lt.embed_pending() == 0


async def test_vector_size_learned_after_a_failed_first_write(lance_lt: LongTermMemory, embedder: Any, agent_id: str) -> None:
    lt = lance_lt  # LanceDB internals below
    embedder.down = True
    await lt.add_passages(agent_id, [("first passage written while the embedder was down", [])])
    now = datetime.now(timezone.utc)
    lt.enqueue_messages([RecallRecord(new_id("message"), agent_id, "user", "first chat line", now)])
    await lt.flush()
    assert lt._passages.dim is None and lt._recall.dim is None  # created without a vector column
    embedder.down = False
    assert await lt.embed_pending() == 2
    assert lt._passages.dim == 32 and lt._recall.dim == 32
    assert (await lt.search_passages(agent_id, "embedder down", mode="vector"))[0].vector_rank == 1
    assert (await lt.search_recall(agent_id, "chat line", mode="vector"))[0].vector_rank == 1


async def test_text_only_store_gains_vectors_when_an_embedder_arrives(tmp_path: Any, embedder: Any) -> None:
    agent_id = new_id("agent")
    path = str(tmp_path / "upgrade")
    plain = LanceLongTermMemory(path, None)
    await plain.open()
    await plain.add_passages(agent_id, [("kept before embeddings existed", [])])
    await plain.close()
    upgraded = LanceLongTermMemory(path, embedder)
    await upgraded.open()
    try:
        assert (await upgraded.search_passages(agent_id, "kept before"))[0].search_mode == "fts"
        assert await upgraded.embed_pending() == 1
        hit = (await upgraded.search_passages(agent_id, "kept before"))[0]
        assert hit.search_mode == "hybrid" and hit.vector_rank == 1
    finally:
        await upgraded.close()


class SlowEmbedder:
    """Answers correctly but only after `delay` seconds, like an overloaded embedding server."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay, self.dim = inner, delay, inner.dim

    async def embed(self, texts: list[str]) -> list[list[float]]:
        await asyncio.sleep(self.delay)
        return await self.inner.embed(texts)


async def test_slow_embedder_does_not_delay_recall(tmp_path: Any, embedder: Any, agent_id: str) -> None:
    slow = SlowEmbedder(embedder, delay=0.3)
    path = str(tmp_path / "slow")
    lt = LanceLongTermMemory(path, slow, recall_embed_timeout=0.1, reembed_interval=0.2)  # type: ignore[arg-type]
    await lt.open()
    lt.start_background()
    try:
        record = RecallRecord(new_id("message"), agent_id, "user", "the albatross flew by", datetime.now(timezone.utc))
        lt.enqueue_messages([record])
        await lt.flush()
        hits = await lt.search_recall(agent_id, "albatross", mode="fts")
        assert [h.record.id for h in hits] == [record.id]
        # The background loop gives it a vector once the slow embedder answers.
        for _ in range(100):
            hits = await lt.search_recall(agent_id, "albatross", mode="vector")
            if hits and hits[0].vector_rank == 1:
                break
            await asyncio.sleep(0.05)
        assert hits and hits[0].vector_rank == 1 and hits[0].search_mode == "vector"
    finally:
        await lt.close()


# --- HttpEmbedder against a real OpenAI-compatible server -------------------------------------

DIM = 8


def fake_vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b / 255.0 + 0.01 for b in digest[:DIM]]


class EmbeddingServer:
    """A tiny OpenAI-style /v1/embeddings endpoint; answers in reverse order to test `index` sorting."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        app = Starlette(routes=[Route("/v1/embeddings", self.embeddings, methods=["POST"])])
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    async def embeddings(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("authorization"))
        texts = body["input"]
        if any("FAIL" in t for t in texts):
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t)} for i, t in enumerate(texts)]
        return JSONResponse({"object": "list", "data": data[::-1], "model": body["model"]})


@pytest.fixture
async def embedding_server() -> AsyncIterator[EmbeddingServer]:
    server = EmbeddingServer()
    task = asyncio.create_task(server.server.serve())
    while not server.server.started:
        await asyncio.sleep(0.01)
    yield server
    server.server.should_exit = True
    await task


async def test_http_embedder_batches_and_learns_dim(embedding_server: EmbeddingServer) -> None:
    embedder = HttpEmbedder(embedding_server.base_url, "sk-test", "embed-small")
    try:
        assert embedder.dim is None
        texts = [f"text number {i}" for i in range(100)]
        vectors = await embedder.embed(texts)
        assert embedder.dim == DIM
        assert [len(r["input"]) for r in embedding_server.requests] == [64, 36]
        assert vectors == [pytest.approx(fake_vector(t)) for t in texts]  # order restored from `index`
        assert embedding_server.auth == ["Bearer sk-test", "Bearer sk-test"]
        assert embedding_server.requests[0]["model"] == "embed-small"
        assert await embedder.embed([]) == []
        await embedder.embed([""])
        assert embedding_server.requests[-1]["input"] == [" "]  # blank text sent as a space
        with pytest.raises(EmbeddingError):
            await embedder.embed(["please FAIL"])
    finally:
        await embedder.close()


async def test_http_embedder_unreachable_raises_embedding_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient() as client:
        embedder = HttpEmbedder(f"http://127.0.0.1:{port}/v1", None, "m", client)
        with pytest.raises(EmbeddingError):
            await embedder.embed(["hello"])


async def test_long_term_memory_over_http_embedder(tmp_path: Any, embedding_server: EmbeddingServer) -> None:
    embedder = HttpEmbedder(embedding_server.base_url + "/", "k", "embed-small")
    lt = LanceLongTermMemory(str(tmp_path / "http"), embedder)
    await lt.open()
    try:
        agent_id = new_id("agent")
        await lt.add_passages(agent_id, [(f"fact {i} about owls", ["owl"]) for i in range(5)])
        assert lt._passages.dim == DIM
        hits = await lt.search_passages(agent_id, "fact 3 about owls")
        assert hits[0].record.text == "fact 3 about owls"
        assert hits[0].vector_rank == 1  # the server's vector for identical text is identical
        assert hits[0].search_mode == "hybrid"
    finally:
        await lt.close()
        await embedder.close()


async def test_changed_vector_size_falls_back_to_text(
    tmp_path: Any, embedder: Any, make_embedder: Any, agent_id: str
) -> None:
    path = str(tmp_path / "resized")
    first = LanceLongTermMemory(path, embedder)
    await first.open()
    await first.add_passages(agent_id, [("written with the 32-dimension model", [])])
    await first.close()
    smaller = make_embedder(dim=16)
    second = LanceLongTermMemory(path, smaller)
    await second.open()
    try:
        await second.add_passages(agent_id, [("written with the 16-dimension model", [])])
        hits = await second.search_passages(agent_id, "dimension model")
        assert len(hits) == 2 and {h.search_mode for h in hits} == {"fts"}
        calls = len(smaller.calls)
        assert await second.embed_pending() == 0
        assert len(smaller.calls) == calls  # no point embedding what cannot be stored
    finally:
        await second.close()
