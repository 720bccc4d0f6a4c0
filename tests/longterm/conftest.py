"""Fixtures for long-term memory: a real LanceDB in tmp_path and a small deterministic embedder."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import pg
import pytest

from memory.longterm import Embedder, EmbeddingError, LanceLongTermMemory, LongTermMemory
from memory.postgres_longterm import PostgresLongTermMemory
from memory.models import new_id

_WORD = re.compile(r"[a-z0-9]+")


class HashEmbedder(Embedder):
    """Hashed bag of words in `dim` dimensions, L2-normalised: texts sharing words point the same way.

    `down = True` makes it fail like an unreachable embedding server; `calls` counts texts embedded.
    """

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self.down = False
        self.calls: list[int] = []

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self.down:
            raise EmbeddingError("embedding server unreachable")
        self.calls.append(len(texts))
        return [self.vector(text) for text in texts]

    def vector(self, text: str) -> list[float]:
        values = [0.0] * self.dim
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=16).digest()
            # Three signed slots per word: a shared word adds 3 to the dot product, a collision about 1.
            for k in range(3):
                chunk = digest[5 * k : 5 * k + 5]
                values[int.from_bytes(chunk[:4], "little") % self.dim] += 1.0 if chunk[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in values))
        if norm == 0:
            values[0], norm = 1.0, 1.0  # a wordless text still gets a valid unit vector
        return [v / norm for v in values]


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture
def make_embedder() -> type[HashEmbedder]:
    """The embedder class, for tests that need another size (conftest is not importable by name)."""
    return HashEmbedder


@pytest.fixture
async def lance_lt(tmp_path: Any, embedder: HashEmbedder) -> AsyncIterator[LanceLongTermMemory]:
    """LanceDB's own implementation, for tests of its internals (optimize, fragments, vector size)."""
    memory = LanceLongTermMemory(str(tmp_path / "lance"), embedder)
    await memory.open()
    yield memory
    await memory.close()


async def _open(request: pytest.FixtureRequest, tmp_path: Any, embedder: Embedder | None,
                ) -> AsyncIterator[LongTermMemory]:
    """Every backend's long-term memory: LanceDB, and PostgreSQL (with pgvector when it has an embedder)."""
    schema = database = None
    if request.param == "lance":
        memory: LongTermMemory = LanceLongTermMemory(str(tmp_path / "lance"), embedder)
    else:
        database = request.getfixturevalue("pgvector_url" if request.param == "pgvector" else "postgres_url")
        schema, url = await pg.create_schema(database)
        memory = PostgresLongTermMemory(url, embedder)
    await memory.open()
    yield memory
    await memory.close()
    if schema is not None and database is not None:
        await pg.drop_schema(database, schema)


@pytest.fixture(params=["lance", "pgvector"])
async def lt(request: pytest.FixtureRequest, tmp_path: Any, embedder: HashEmbedder) -> AsyncIterator[LongTermMemory]:
    async for memory in _open(request, tmp_path, embedder):
        yield memory


@pytest.fixture(params=["lance", "postgres"])
async def lt_text_only(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[LongTermMemory]:
    """Without an embedder; on PostgreSQL, the local server without pgvector."""
    async for memory in _open(request, tmp_path, None):
        yield memory


@pytest.fixture
def agent_id() -> str:
    return new_id("agent")
