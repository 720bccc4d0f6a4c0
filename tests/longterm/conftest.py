"""Fixtures for long-term memory: a real LanceDB in tmp_path and a small deterministic embedder."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from memory.longterm import Embedder, EmbeddingError, LanceLongTermMemory
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
async def lt(tmp_path: Any, embedder: HashEmbedder) -> AsyncIterator[LanceLongTermMemory]:
    memory = LanceLongTermMemory(str(tmp_path / "lance"), embedder)
    await memory.open()
    yield memory
    await memory.close()


@pytest.fixture
async def lt_text_only(tmp_path: Any) -> AsyncIterator[LanceLongTermMemory]:
    memory = LanceLongTermMemory(str(tmp_path / "lance-fts"), None)
    await memory.open()
    yield memory
    await memory.close()


@pytest.fixture
def agent_id() -> str:
    return new_id("agent")
