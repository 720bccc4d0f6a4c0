"""`python -m bench.store_cost`: the embedded store's CPU per turn to apply journaled turns, as its tables grow.

The store acknowledges a turn once its journal is synced and applies the waiting turns to DuckDB's tables in
one group every two seconds (memory/duckdb_journal.py). For each size (default 100k and 1M stored messages)
this opens a throwaway database the way the store does (`DuckDBConnection`'s settings and migrations: one
DuckDB thread, a checkpoint every 4 MB of WAL), fills it in bulk, then applies `--groups` groups of `--turns`
turns each (two messages and a run per turn, as an agent turn writes, over 1,000 agents) through the store's own
group commit (`GroupCommit.drain`) and prints the applying thread's CPU per turn, checkpoints included.

`--old-ids` makes every id as memproxy did before 2026-12-02 (all 122 bits random) instead of with the time in
its first 48 bits (memory.models.new_id), to compare where a new row's key lands in the id indexes.
Not part of any suite: a one-off measurement, seconds at 100k and about a minute at 1M.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone

from memory.duckdb_commit import GroupCommit, insert_rows
from memory.duckdb_connection import DuckDBConnection
from memory.duckdb_rows import MESSAGES, message_row
from memory.models import Changes, Message, Run, id_from_bits, new_id

AGENTS = 1000
FILL_CHUNK = 100_000


def old_id(kind: str) -> str:
    """An id as `new_id` made them before: all random bits (version 4 layout)."""
    return id_from_bits(kind, int.from_bytes(os.urandom(16)))


def turn(ids: Callable[[str], str], agent: int, seq: int, now: datetime) -> Changes:
    agent_id = f"agent-{agent:08d}-0000-4000-8000-000000000000"
    run = Run(id=ids("run"), agent_id=agent_id, status="completed", stop_reason="end_turn", steps=1,
              usage={"prompt_tokens": 900, "completion_tokens": 24, "total_tokens": 924},
              created_at=now, completed_at=now)
    messages = [Message(id=ids("message"), agent_id=agent_id, seq=seq + k, role=role, run_id=run.id,
                        content=f"turn {seq} of agent {agent}: a short {role} message of a dozen words or so",
                        created_at=now) for k, role in enumerate(("user", "assistant"))]
    return Changes(messages=messages, runs=[run], insert_only=True)


def measure(size: int, groups: int, turns: int, old_ids: bool) -> list[float]:
    make_id = old_id if old_ids else new_id
    now = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory(prefix="memproxy-store-cost-") as tmp:
        store = DuckDBConnection(os.path.join(tmp, "memproxy.duckdb"), journal=False)
        store._connect()
        con = store._con
        assert con is not None
        try:
            for start in range(0, size // 2, FILL_CHUNK // 2):  # two messages a turn
                insert_rows(con, MESSAGES, [message_row(m, True)
                                            for j in range(start, min(size // 2, start + FILL_CHUNK // 2))
                                            for m in turn(make_id, j % AGENTS, 2 * (j // AGENTS), now).messages])
            con.execute("CHECKPOINT")
            seq = 2 * (size // AGENTS) + 2
            per_group = []
            for g in range(groups):
                commit = GroupCommit()

                async def queue() -> None:
                    for t in range(turns):
                        commit.enqueue_journaled(turn(make_id, t % AGENTS, seq + 2 * (g * turns + t), now),
                                                 g * turns + t + 1)

                asyncio.run(queue())
                t0 = time.thread_time()
                commit.drain(con)
                per_group.append((time.thread_time() - t0) * 1e6 / turns)
            stored = con.execute("SELECT count(*) FROM messages").fetchone()
            if stored != (size // 2 * 2 + 2 * groups * turns,):
                raise RuntimeError(f"the groups did not all land: {stored} messages stored")
        finally:
            con.close()
    return per_group


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="stored messages before the groups (default 100k, 1M)")
    parser.add_argument("--groups", type=int, default=12, help="groups applied per size (default 12)")
    parser.add_argument("--turns", type=int, default=1200, help="turns per group (default 1,200: two seconds at 600/s)")
    parser.add_argument("--old-ids", action="store_true", help="ids with all bits random, as before 2026-12-02")
    args = parser.parse_args(argv)
    for size in (int(s) for s in args.sizes.split(",")):
        per_group = measure(size, args.groups, args.turns, args.old_ids)
        print(f"{size:>9,} messages stored: {statistics.mean(per_group):6.1f} us of CPU per turn applied "
              f"(mean of {args.groups} groups of {args.turns}; median {statistics.median(per_group):.1f}, "
              f"max {max(per_group):.1f}; {'random' if args.old_ids else 'time-ordered'} ids)", flush=True)


if __name__ == "__main__":
    main()
