"""The records long-term memory stores and returns. Plain dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Passage:
    """One archival-memory entry."""

    id: str
    agent_id: str
    text: str
    tags: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecallRecord:
    """The searchable projection of one conversation message (id = the message id)."""

    id: str
    agent_id: str
    role: str
    text: str
    created_at: datetime


@dataclass
class SearchHit:
    """A search result with its reciprocal-rank-fusion score and the rank it had in each search."""

    record: Passage | RecallRecord
    rrf_score: float
    vector_rank: int | None = None  # 1-based; None when the vector search did not return it
    fts_rank: int | None = None  # 1-based; None when the full-text search did not return it
    search_mode: str = "hybrid"  # the mode actually used: hybrid | vector | fts | recent


# A passage and its vector, as export and import move them (None: the source had none).
PassageWithVector = tuple[Passage, "list[float] | None"]


def vector_groups(items: list[PassageWithVector]) -> list[tuple[list[Passage], list[list[float]] | None]]:
    """Split items into groups that share a vector size (or have none), in order, for one write each."""
    groups: dict[int | None, tuple[list[Passage], list[list[float]]]] = {}
    for passage, vector in items:
        key = len(vector) if vector else None
        passages, vectors = groups.setdefault(key, ([], []))
        passages.append(passage)
        if vector:
            vectors.append([float(v) for v in vector])
    return [(passages, vectors if key is not None else None) for key, (passages, vectors) in groups.items()]
