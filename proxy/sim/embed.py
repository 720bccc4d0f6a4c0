"""Deterministic, meaningful embeddings: signed feature hashing of words and character trigrams."""

from __future__ import annotations

import base64
import math
import re
import sys
import zlib
from array import array
from functools import lru_cache
from typing import Any

_WORD = re.compile(r"\w+")
TRIGRAM_WEIGHT = 0.3


def _signed_slot(feature: bytes, dim: int, weight: float) -> tuple[int, float]:
    # crc32 is stable across processes, unlike hash(); the top bit picks the sign.
    h = zlib.crc32(feature)
    return h % dim, weight if h & 0x80000000 else -weight


@lru_cache(maxsize=1 << 16)
def _word_features(word: str, dim: int) -> tuple[tuple[int, float], ...]:
    features = [_signed_slot(b"w:" + word.encode(), dim, 1.0)]
    padded = f"#{word}#".encode()
    features.extend(_signed_slot(b"t:" + padded[i:i + 3], dim, TRIGRAM_WEIGHT) for i in range(len(padded) - 2))
    return tuple(features)


def embed_text(text: str, dim: int) -> list[float]:
    """A unit vector; texts sharing words get a high cosine similarity."""
    vector = [0.0] * dim
    for word in _WORD.findall(text.lower()):
        for slot, weight in _word_features(word, dim):
            vector[slot] += weight
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        # Empty text still gets a unit vector so cosine math downstream never divides by zero.
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def embedding_inputs(raw: Any) -> list[str]:
    """The texts of an embeddings `input`: a string, a list of strings, or token-id lists."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, int) for x in raw):
            return [" ".join(map(str, raw))]
        texts = []
        for item in raw:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, list) and all(isinstance(x, int) for x in item):
                texts.append(" ".join(map(str, item)))
            else:
                raise ValueError("input items must be strings or token-id lists")
        return texts
    raise ValueError("input must be a non-empty string or list")


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """`float` gives the list; `base64` gives little-endian float32 bytes, as the openai SDK requests by default."""
    if encoding_format != "base64":
        return vector
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()
