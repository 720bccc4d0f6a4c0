"""Export: every record of a backend, streamed a keyset page at a time into an export file.

Order: MCP servers, tools, blocks, agents, runs, messages, passages — each kind ascending by id, so
everything a record refers to (an agent's blocks, a message's agent) is written before it. Memory holds one
page (MCP servers, a handful, all at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memory.longterm.api import LongTermMemory
from memory.portable.records import KINDS, TABLES, end_record, to_record
from memory.store import Store

PAGE = 1000


async def dump(store: Store, longterm: LongTermMemory, write: Callable[[dict[str, Any]], None],
               on_record: Callable[[int], None] | None = None, page: int = PAGE) -> dict[str, int]:
    """Write every record and the end record; returns the count of each kind."""
    counts = {kind: 0 for kind in KINDS}
    servers = sorted(await store.list_mcp_servers(), key=lambda server: server.id)
    for server in servers:
        write(to_record("mcp_server", server))
    counts["mcp_server"] = total = len(servers)
    for kind, table in TABLES.items():
        after: str | None = None
        while True:
            records = await store.scan(table, after=after, limit=page)
            for record in records:
                write(to_record(kind, record))
            counts[kind] += len(records)
            total += len(records)
            if on_record is not None:
                on_record(total)
            if len(records) < page:
                break
            after = records[-1].id
    after = None
    while True:
        passages = await longterm.export_passages(after=after, limit=page)
        for passage, vector in passages:
            write(to_record("passage", passage, vector))
        counts["passage"] += len(passages)
        total += len(passages)
        if on_record is not None:
            on_record(total)
        if len(passages) < page:
            break
        after = passages[-1][0].id
    write(end_record(counts))
    return counts
