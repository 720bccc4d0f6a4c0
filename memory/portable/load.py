"""Import: an export file into a backend, a batch at a time, idempotent and resumable.

Records whose id the target already holds are skipped, never overwritten: importing a file twice
changes nothing, a re-run after an interruption adds only what is missing, and a target that moved on
after a first import (a server ran on it) keeps its newer state. Every batch is one transaction of one
kind, written only once everything it refers to exists, so an import cut short (a truncated file, a
crash) leaves whole, consistent records. Each batch is checked back against the target; the recall
index is built from the imported messages, then reconciled with the store (which also fills what an
interrupted run had committed but not yet indexed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from memory.longterm.api import LongTermMemory
from memory.longterm.records import PassageWithVector
from memory.mcp_servers import McpServer
from memory.models import Changes
from memory.portable.records import KINDS, TABLES, FormatError, from_record
from memory.recall import index_messages, reconcile
from memory.store import Conflict, NotFound, Store

BATCH = 500


class LoadError(Exception):
    """The file is readable but the target cannot take a record; the message says which and why."""


@dataclass
class KindCount:
    read: int = 0  # records of this kind in the file
    added: int = 0  # written by this import
    present: int = 0  # already in the target, skipped
    found: int = 0  # read and confirmed in the target afterwards


@dataclass
class LoadReport:
    counts: dict[str, KindCount] = field(default_factory=lambda: {kind: KindCount() for kind in KINDS})
    expected: dict[str, int] | None = None  # the file's end record

    def mismatches(self) -> list[str]:
        problems = []
        for kind, count in self.counts.items():
            want = (self.expected or {}).get(kind, 0)
            if count.read != want:
                problems.append(f"{kind}: the file announces {want} but holds {count.read}")
            if count.found != count.read:
                problems.append(f"{kind}: {count.read} in the file but {count.found} found in the target")
        return problems


class Loader:
    def __init__(self, store: Store, longterm: LongTermMemory, skip_tools: frozenset[str], *,
                 keep_vectors: bool = True, batch: int = BATCH) -> None:
        self.store = store
        self.longterm = longterm
        self.skip_tools = skip_tools
        self.keep_vectors = keep_vectors
        self.batch = batch
        self.report = LoadReport()

    async def load(self, lines: Iterable[tuple[int, Any]],
                   on_batch: Callable[[int], None] | None = None) -> LoadReport:
        """Import every record; FormatError for an unreadable file, LoadError for a record the target refuses."""
        kind_now: str | None = None
        pending: list[Any] = []
        done = 0
        try:
            for line, obj in lines:
                if self.report.expected is not None:
                    raise FormatError(f"line {line}: records after the end record")
                kind, record = from_record(obj, line)
                if kind == "end":
                    self.report.expected = record
                    continue
                if pending and (kind != kind_now or len(pending) >= self.batch):
                    batch, pending = pending, []
                    await self._flush(kind_now, batch)  # type: ignore[arg-type]
                    done += len(batch)
                    if on_batch is not None:
                        on_batch(done)
                kind_now = kind
                pending.append(record)
            if self.report.expected is None:
                raise FormatError("the file is truncated: it ends without its end record")
        except FormatError:
            # The records read before the damage are whole and valid: keep them, so a re-run has less to do.
            if pending:
                await self._flush(kind_now, pending)  # type: ignore[arg-type]
            raise
        if pending:
            await self._flush(kind_now, pending)  # type: ignore[arg-type]
            done += len(pending)
        await self.longterm.flush()
        await reconcile(self.store, self.longterm, self.skip_tools)
        if on_batch is not None:
            on_batch(done)
        return self.report

    async def _flush(self, kind: str, records: list[Any]) -> None:
        count = self.report.counts[kind]
        count.read += len(records)
        if kind == "passage":
            await self._passages(records, count)
            return
        if kind == "mcp_server":
            await self._mcp_servers(records, count)
            return
        table = TABLES[kind]
        ids = [r.id for r in records]
        if len(set(ids)) != len(ids):
            raise LoadError(f"{kind} ids repeat within the file")
        present = await self.store.existing_ids(table, ids)
        new = [r for r in records if r.id not in present]
        if kind in ("run", "message"):
            await self._require_agents(kind, [r.agent_id for r in new])
        try:
            await self._write(kind, new)
        except NotFound as exc:
            raise LoadError(f"{kind}: {exc}; it must come earlier in the file or exist in the target") from None
        except Conflict as exc:
            raise LoadError(f"{kind}: the target refused a record ({exc}); it holds different data under "
                            "the same name or sequence number") from None
        count.added += len(new)
        count.present += len(present)
        count.found += len(await self.store.existing_ids(table, ids))

    async def _write(self, kind: str, new: list[Any]) -> None:
        if not new:
            return
        if kind == "tool":
            for tool in new:
                await self.store.create_tool(tool)
        elif kind == "block":
            await self.store.commit(Changes(blocks=new))
        elif kind == "agent":
            for agent in new:
                await self.store.create_agent(agent, [])
        elif kind == "run":
            await self.store.commit(Changes(runs=new, insert_only=True))
        else:
            await self.store.commit(Changes(messages=new, insert_only=True))
            index_messages(self.longterm, new, self.skip_tools, new=False)

    async def _passages(self, items: list[PassageWithVector], count: Any) -> None:
        ids = [p.id for p, _ in items]
        present = await self.longterm.existing_passage_ids(ids)
        new = [(p, v if self.keep_vectors else None) for p, v in items if p.id not in present]
        await self._require_agents("passage", [p.agent_id for p, _ in new])
        if new:
            await self.longterm.put_passages(new)
        count.added += len(new)
        count.present += len(present)
        count.found += len(await self.longterm.existing_passage_ids(ids))

    async def _mcp_servers(self, servers: list[McpServer], count: KindCount) -> None:
        ids = {server.id for server in servers}

        async def held() -> set[str]:
            return ids & {server.id for server in await self.store.list_mcp_servers()}

        present = await held()
        for server in servers:
            if server.id in present:
                continue
            try:
                await self.store.create_mcp_server(server)
            except Conflict as exc:
                raise LoadError(f"mcp_server: the target already has an MCP server named {server.server_name!r} "
                                f"under another id ({exc})") from None
            count.added += 1
        count.present += len(present)
        count.found += len(await held())

    async def _require_agents(self, kind: str, agent_ids: list[str]) -> None:
        wanted = sorted(set(agent_ids))
        missing = set(wanted) - await self.store.existing_ids("agents", wanted)
        if missing:
            raise LoadError(f"a {kind} belongs to agent {min(missing)}, which is neither earlier in the file "
                            "nor in the target")
