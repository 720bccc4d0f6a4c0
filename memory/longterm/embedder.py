"""Text embedders: the interface long-term memory needs, and an OpenAI-compatible HTTP client for it."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, Callable

import httpx

MAX_BATCH = 64  # texts per /embeddings call; OpenAI accepts more, local servers often do not
MAX_CHARS = 8000  # keeps one text under common 8k-token model limits so a long row cannot poison a batch


class EmbeddingError(RuntimeError):
    """The embedding backend failed or answered something unusable."""


class RareWarning:
    """Logs a warning at most once per `every` seconds: a dead embedder would otherwise log on every write."""

    def __init__(self, log: logging.Logger, every: float = 30.0) -> None:
        self.log = log
        self.every = every
        self._last = 0.0

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.log.warning(message)


async def embed_or_none(embedder: Embedder, texts: list[str], timeout: float,
                        warn: Callable[[str], None]) -> list[list[float]] | None:
    """Vectors for `texts`, or None when the embedder fails, is slow or answers unusably (said through `warn`).

    Long-term memory never fails a write over a vector: the rows are stored for full-text search and
    re-embedded later.
    """
    try:
        vectors = await asyncio.wait_for(embedder.embed(texts), timeout)
    except (EmbeddingError, asyncio.TimeoutError) as exc:
        warn(f"embedding failed; full-text search only until it recovers: {exc!r}")
        return None
    if len(vectors) != len(texts) or len({len(v) for v in vectors}) != 1:
        warn("embedder returned a wrong number or mix of vector sizes")
        return None
    return vectors


class Embedder:
    """Turns texts into vectors of `dim` floats. `dim` is None until the first answer reveals it."""

    dim: int | None = None

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order. Raises EmbeddingError on failure."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections the embedder owns."""


class HttpEmbedder(Embedder):
    """Calls `POST {base_url}/embeddings` on an OpenAI-compatible server (base_url ends with /v1)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        client: httpx.AsyncClient | None = None,
        *,
        timeout: float = 30.0,
        batch_size: int = MAX_BATCH,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.dim = None
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout

    async def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(await self._embed_batch(texts[start : start + self.batch_size]))
        return vectors

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        # OpenAI rejects empty strings, so a blank row is embedded as a single space.
        inputs = [(text[:MAX_CHARS] if text.strip() else " ") for text in texts]
        body = {"model": self.model, "input": inputs, "encoding_format": "float"}
        try:
            response = await self._client.post(
                f"{self.base_url}/embeddings", json=body, headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"embedding request failed: {exc!r}") from exc
        if response.status_code != 200:
            raise EmbeddingError(f"embedding request failed: HTTP {response.status_code}: {response.text[:300]}")
        try:
            data = response.json()["data"]
            # Servers may answer out of order; `index` is authoritative.
            ordered = sorted(data, key=lambda item: item.get("index", 0))
            vectors = [_as_vector(item["embedding"]) for item in ordered]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"malformed embedding response: {exc!r}") from exc
        if len(vectors) != len(texts):
            raise EmbeddingError(f"asked for {len(texts)} embeddings, got {len(vectors)}")
        self._check_dim(vectors)
        return vectors

    def _check_dim(self, vectors: list[list[float]]) -> None:
        for vector in vectors:
            if self.dim is None:
                self.dim = len(vector)
            if len(vector) != self.dim or self.dim == 0:
                raise EmbeddingError(f"embedding has {len(vector)} dimensions, expected {self.dim}")

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _as_vector(raw: Any) -> list[float]:
    if not isinstance(raw, list):
        # A base64 answer means the server ignored encoding_format; we do not guess its dtype.
        raise TypeError("embedding is not a list of floats")
    vector = [float(x) for x in raw]
    if not all(math.isfinite(x) for x in vector):
        raise ValueError("embedding contains NaN or infinity")
    return vector
