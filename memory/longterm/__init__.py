"""Long-term memory on LanceDB: archival passages and the recall index, with hybrid search."""

from memory.longterm.embedder import Embedder, EmbeddingError, HttpEmbedder
from memory.longterm.index import LongTermMemory
from memory.longterm.records import Passage, RecallRecord, SearchHit
from memory.longterm.timefilter import parse_range

__all__ = [
    "Embedder",
    "EmbeddingError",
    "HttpEmbedder",
    "LongTermMemory",
    "Passage",
    "RecallRecord",
    "SearchHit",
    "parse_range",
]
