"""What a turn lease means when several processes share the store: stale caches and cross-process retries.

A process holding an agent's lease (proxy.coordination.Lease) checks that its cached agent is at the
version the lease read, reloading it otherwise; and a request whose idempotency record names a run that
completed elsewhere (or that was in flight elsewhere while it waited) replays that run from the store.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from memory.agents import AgentMemory, LiveAgent
from memory.compile import MemoryMetadata
from memory.models import Message, Run
from memory.store import Store
from proxy.chat.retries import TurnRecord
from proxy.coordination import Lease

# How far back a stored replay looks for the run's messages (a retry comes soon after its turn).
REPLAY_SCAN = 500
_REASONS = {"end_turn": "stop", "max_steps": "length", "max_tokens": "length", "tool_calls": "tool_calls"}


async def current(memory: AgentMemory, live: LiveAgent, lease: Lease) -> LiveAgent | None:
    """The agent as of the lease: the cached copy if it is at the lease's version, else a fresh load."""
    cached = memory.peek(live.id)
    if cached is not None and cached.version is not None and cached.version == lease.version:
        return cached
    memory.forget(live.id)
    fresh = await memory.get(live.id)
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
