"""Long-term memory's semantics: archival passages, the recall index, hybrid search.

The interface is `memory.protocols.LongTermMemory` (re-exported here); LanceDB (`memory.longterm.index`)
and PostgreSQL (`memory.postgres_longterm`) implement it. The proxy and the tools only name this type. Every agent-scoped method sees one agent's data only; search hits carry
`rrf_score`, `vector_rank` and `fts_rank` (reciprocal-rank fusion of a vector and a full-text search,
full-text only without an embedder). Id scans are keyset pages in byte order of the id, like `Store`'s.
"""

from __future__ import annotations

from memory.protocols import ID_PAGE_SIZE, LongTermMemory

__all__ = ["ID_PAGE_SIZE", "LongTermMemory"]
