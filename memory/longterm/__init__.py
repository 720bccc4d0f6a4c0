"""Long-term memory: archival passages and the recall index, with hybrid search.

`LongTermMemory` is the interface; `LanceLongTermMemory` (LanceDB) implements it and is imported only
when asked for, so a backend without LanceDB never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memory.longterm.api import LongTermMemory
from memory.longterm.embedder import Embedder, EmbeddingError, HttpEmbedder
from memory.longterm.records import Passage, RecallRecord, SearchHit
from memory.longterm.timefilter import parse_range

if TYPE_CHECKING:
    from memory.longterm.index import LanceLongTermMemory

__all__ = [
    "Embedder",
    "EmbeddingError",
    "HttpEmbedder",
    "LanceLongTermMemory",
    "LongTermMemory",
    "Passage",
    "RecallRecord",
    "SearchHit",
    "parse_range",
]


def __getattr__(name: str) -> Any:
    if name == "LanceLongTermMemory":
        from memory.longterm.index import LanceLongTermMemory

        return LanceLongTermMemory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
