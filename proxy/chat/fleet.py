"""What a turn lease means when several processes share the store: stale caches and cross-process retries.

A process holding an agent's lease (proxy.coordination.Lease) checks that its cached agent is at the
version the lease read, reloading it otherwise; and a request whose idempotency record names a run that
completed elsewhere (or that was in flight elsewhere while it waited) replays that run from the store.
"""

from __future__ import annotations

import contextlib
import time
from datetime import date
from typing import Any, AsyncIterator, Protocol

from memory.agents import AgentMemory, LiveAgent
from memory.compile import MemoryMetadata
from memory.models import Message, Run
from memory.store import Store
from proxy.chat.retries import TurnRecord
from proxy.coordination import AgentLocks, CoordinationDown, Lease, LockTimeout
from proxy.errors import APIError


class CatchUp(Protocol):
    """What a lease needs of the tools' coherence (proxy.tool_sync.ToolSync)."""

    async def catch_up(self, version: int | None) -> None: ...


class Leases:
    """Takes and gives back the runner's turn leases; maps a busy agent to 409 and a silent Redis to 503."""

    def __init__(self, locks: AgentLocks, memory: AgentMemory, lock_timeout: float) -> None:
        self.locks = locks
        self.memory = memory
        self.lock_timeout = lock_timeout
        # Set by start_services with several processes: brings the tool registry to the lease's tools version.
        self.tools: CatchUp | None = None

    async def take(self, agent_id: str, **kw: Any) -> Lease:
        try:
            lease = await self.locks.lease(agent_id, self.lock_timeout, **kw)
        except LockTimeout:
            raise APIError(409, f"agent {agent_id} is busy with another turn; retry when it finishes",
                           code="agent_busy") from None
        except CoordinationDown as exc:
            raise APIError(503, f"{exc}; agent turns are refused until it answers again",
                           code="coordination_unavailable", headers={"Retry-After": "1"}) from None
        if self.tools is not None and lease.tools_version is not None:
            try:
                await self.tools.catch_up(lease.tools_version)
            except BaseException:
                await lease.release(bump=False)
                raise
        return lease

    async def give(self, lease: Lease, *, bump: bool, record: dict[str, Any] | None = None,
                   record_ttl: float = 0.0, meta: dict[str, Any] | None = None) -> None:
        old, new = await lease.release(bump=bump, record=record, record_ttl=record_ttl, meta=meta)
        if bump and self.locks.shared:
            self.memory.apply_bumps([lease.agent_id], [] if new is None else [(lease.agent_id, old, new)])

    @contextlib.asynccontextmanager
    async def hold(self, agent_id: str) -> AsyncIterator[LiveAgent | None]:
        lease = await self.take(agent_id)
        live: LiveAgent | None = None
        try:
            live = self.memory.peek(agent_id) or await self.memory.get(agent_id)
            if self.locks.shared and live is not None:
                live = await current(self.memory, live, lease)
            if live is not None:
                live.fence = lease.fence
            yield live
        finally:
            await self.give(lease, bump=self.locks.shared)
            if live is not None:
                live.fence = 0

    def record_ttl(self, ttl: float) -> float:
        # A running record outlives the wait of any retry that may join it.
        return max(ttl, self.lock_timeout + 60.0)

    async def shared_start(self, live: LiveAgent, lease: Lease, key: str, ttl: float, run: Run,
                           arrived: float) -> TurnRecord | LiveAgent:
        """Under the lease: a turn another process completed (to replay), or the agent at the lease's version."""
        candidate = replay_candidate(lease, arrived)
        if candidate is not None:
            stored = await stored_turn(self.memory.store, candidate)
            if stored is not None:
                return stored
        if lease.prior is not None:  # a stale or failed record: this request runs anew and claims it
            await self.locks.record(live.id, key, running_record(run.id), self.record_ttl(ttl))
        fresh = await current(self.memory, live, lease)
        if fresh is None:
            raise APIError(404, f"agent {live.id} was deleted", code="agent_not_found")
        fresh.fence = lease.fence
        return fresh


# How far back a stored replay looks for the run's messages (a retry comes soon after its turn).
REPLAY_SCAN = 500
_REASONS = {"end_turn": "stop", "max_steps": "length", "max_tokens": "length", "tool_calls": "tool_calls"}


async def current(memory: AgentMemory, live: LiveAgent, lease: Lease) -> LiveAgent | None:
    """The agent as of the lease: the cached copy if it is at the lease's version, else a fresh load."""
    cached = memory.peek(live.id)
    if cached is not None and cached.version is not None and cached.version == lease.version:
        if cached.prompt_meta is None:  # loaded at this version and never compiled: as the last process did
            cached.pinned_meta = pinned_meta(lease.meta)
        return cached
    memory.forget(live.id, stale=True)  # another process's turns came after it: brought up to date, not re-read
    fresh = await memory.get(live.id, version=lease.version)  # read after the lease: at least at its version
    if fresh is not None:
        fresh.version = lease.version
        fresh.pinned_meta = pinned_meta(lease.meta)
    return fresh


def meta_json(live: LiveAgent) -> dict[str, Any] | None:
    """The metadata the agent's prompt was compiled with, for the next process that reloads it."""
    meta = live.prompt_meta
    if meta is None or live.prompt is None:
        return None
    return {"today": meta.today.isoformat(), "recall": meta.recall_count, "archival": meta.archival_count,
            "tags": list(meta.archival_tags)}


def pinned_meta(raw: dict[str, Any] | None) -> MemoryMetadata | None:
    if not raw:
        return None
    try:
        return MemoryMetadata(today=date.fromisoformat(raw["today"]), recall_count=int(raw["recall"]),
                              archival_count=int(raw["archival"]), archival_tags=tuple(raw["tags"]))
    except (KeyError, TypeError, ValueError):
        return None


def replay_candidate(lease: Lease, arrived: float) -> str | None:
    """The run a request repeats, per the idempotency record its lease read (None: run a new turn).

    `arrived` (wall clock) is when the request came in: a turn that ended after it was in flight then,
    and the request joins it even if its record allows no replay later (a bare message repeated).
    """
    if lease.joined:
        return lease.joined  # an equal request was in flight elsewhere while this one waited for the lock
    prior = lease.prior
    if not prior:
        return None
    if prior.get("state") == "running":
        # Its holder is gone (we hold the lock now): replay it only if it stored a completed run.
        return str(prior.get("run") or "") or None
    if prior.get("state") == "done" and (float(prior.get("until") or 0) > time.time()
                                         or float(prior.get("ended") or 0) > arrived):
        return str(prior.get("run") or "") or None
    return None


def running_record(run_id: str) -> dict[str, Any]:
    return {"run": run_id, "state": "running", "until": 0}


def finished_record(run: Run, ttl: float) -> dict[str, Any]:
    """A completed turn replays for `ttl` seconds; a failed or cancelled one never does (the retry runs anew)."""
    now = time.time()
    if run.status != "completed":
        return {"run": run.id, "state": "failed", "until": 0, "ended": now}
    return {"run": run.id, "state": "done", "until": now + ttl, "ended": now}


async def stored_turn(store: Store, run_id: str) -> TurnRecord | None:
    """A completed run rebuilt as a finished `TurnRecord` from its stored messages, or None if not replayable."""
    run = await store.get_run(run_id)
    if run is None or run.status != "completed":
        return None
    recent = await store.list_messages(run.agent_id, limit=REPLAY_SCAN, ascending=False)
    messages = [m for m in reversed(recent) if m.run_id == run_id]
    record = TurnRecord("stored:" + run_id, 0.0)
    record.run_id = run_id
    for name, args in _events(messages):
        record.add(name, args)
    record.add("finish", (_REASONS.get(run.stop_reason or "", run.stop_reason or "stop"), dict(run.usage)))
    return record


def _events(messages: list[Message]) -> list[tuple[str, tuple[Any, ...]]]:
    """What the client saw of the turn: its text and client tool calls, and (for Letta) server tool steps."""
    out: list[tuple[str, tuple[Any, ...]]] = [("accepted", ())]
    server_calls: set[str] = set()
    index = 0
    for message in messages:
        if message.role == "assistant":
            if message.content:
                out.append(("content", (message.content,)))
            client = set(message.metadata.get("client_tool_calls") or ())
            for call in message.tool_calls or ():
                fn = call.get("function") or {}
                if call.get("id") in client:
                    out.append(("tool_call_start", (index, call["id"], fn.get("name") or "")))
                    out.append(("tool_call_arguments", (index, fn.get("arguments") or "")))
                    index += 1
                else:
                    server_calls.add(call.get("id") or "")
                    out.append(("server_tool_call", (call.get("id") or "", fn.get("name") or "",
                                                     fn.get("arguments") or "")))
        elif message.role == "tool" and message.tool_call_id in server_calls:
            out.append(("tool_return", (message.tool_call_id, message.name or "", message.content or "",
                                        not message.metadata.get("error"))))
    return out
