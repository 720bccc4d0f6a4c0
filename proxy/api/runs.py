"""Runs: one agent turn each, with its status, stop reason, steps, usage and timings."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.api.lookup import cursor, is_id, runtime
from proxy.api.protocol import run_json
from proxy.api.wire.messages import RunListQuery
from proxy.errors import not_found
from proxy.http import json_response, query_int


async def list_runs(request: Request, query: RunListQuery) -> Response:
    """Newest first; `after=<last id>` is the next (older) page, `before=<first id>` the previous one."""
    agent_id = query.agent_id
    if agent_id is not None and not is_id("agent", agent_id):
        raise not_found("agent", agent_id)
    newer_than = cursor(request, "before", "run")
    older_than = cursor(request, "after", "run")
    limit = query_int(request, "limit", 50, high=10000)
    # The store lists newest first only, so a backwards page reads to the cursor and keeps the tail.
    backwards = newer_than is not None and older_than is None
    rt = runtime(request)
    await rt.memory.settled(agent_id)
    runs = await rt.store.list_runs(agent_id=agent_id, before=older_than, after=newer_than,
                                    limit=None if backwards else limit)
    if backwards and limit is not None:
        runs = runs[-limit:]
    if newer_than is None and older_than is None:
        # Turns in flight are not stored until they end; the first page shows them from memory.
        stored = {run.id for run in runs}
        running = [r for r in rt.turns.active.values()
                   if r.id not in stored and (agent_id is None or r.agent_id == agent_id)]
        runs = sorted(running, key=lambda r: r.created_at, reverse=True) + runs
        if limit is not None:
            runs = runs[:limit]
        out = [run_json(run) for run in runs]
        if rt.turns.locks.shared:
            # ...and those in flight on other processes, from the records their leases keep in Redis.
            shown = {run["id"] for run in out}
            elsewhere = [r for r in await rt.turns.locks.running_runs()
                         if r["id"] not in shown and (agent_id is None or r["agent_id"] == agent_id)]
            out = (elsewhere + out)[:limit] if limit is not None else elsewhere + out
        return json_response(out)
    return json_response([run_json(run) for run in runs])


async def get_run(request: Request) -> Response:
    run_id: str = request.path_params["run_id"]
    rt = runtime(request)
    run = rt.turns.active.get(run_id)
    if run is None and is_id("run", run_id):
        await rt.memory.settled()
        run = await rt.store.get_run(run_id)
        if run is None and rt.turns.locks.shared:
            # In flight on another process: its lease keeps the run in Redis until the turn is stored.
            running = await rt.turns.locks.running(run_id)
            if running is not None:
                return json_response(running)
    if run is None:
        raise not_found("run", run_id)
    return json_response(run_json(run))
