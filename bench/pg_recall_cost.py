"""PostgreSQL backend CPU of indexing one turn's recall rows, against recall tables of 1k to 1M rows.

`python -m bench.pg_recall_cost [--sizes 1000,100000] [--turns 2000]` on a throwaway database of
`MEMPROXY_BENCH_POSTGRES_URL` (default the local server), dropped after. The table is filled in bulk SQL
(~20 pseudo-words per row, 200 agents), then each turn runs the store commit's own recall upsert
(`postgres_commit._recall_upsert()`, two rows, its own transaction) and the figure is the server backend's
CPU (/proc/<backend pid>/stat, so the server must be on this machine) per turn, plus the same statement's
client-side p50. Autovacuum and the WAL writer are other processes and not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from datetime import datetime, timezone

import asyncpg

from bench.procs import cpu_seconds
from bench.stats import summary
from memory.postgres_commit import _recall_upsert
from memory.postgres_migrations import apply_migrations

BASE_URL = os.environ.get("MEMPROXY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FILL = """
INSERT INTO recall (id, agent_id, role, text, created_at)
SELECT 'message-' || md5(i::text || 'm')::uuid::text, 'agent-' || md5((i % 200)::text)::uuid::text,
       CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
       (SELECT string_agg(substr(md5((i * 31 + k)::text), 1, 2 + (i + k) % 5), ' ') FROM generate_series(1, 20) k),
       now() - make_interval(secs => $1 - i)
FROM generate_series(1, $1) i
"""


async def measure(size: int, turns: int, base_url: str = BASE_URL) -> dict[str, object]:
    name = f"memproxy_test_idxcost_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(base_url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        con = await asyncpg.connect(base_url.rsplit("/", 1)[0] + "/" + name)
        try:
            await apply_migrations(con)
            await con.execute(FILL, size)
            await con.execute("VACUUM ANALYZE recall")
            pid = await con.fetchval("SELECT pg_backend_pid()")
            agent = "agent-" + str(uuid.uuid4())
            latencies = []
            cpu0 = cpu_seconds(pid)
            for t in range(turns):
                now = datetime.now(timezone.utc)
                rows = [("message-" + str(uuid.uuid4()), agent, role, f"turn {t} {role} about kyoto trains", now)
                        for role in ("user", "assistant")]
                t0 = time.perf_counter()
                async with con.transaction():
                    await con.execute(_recall_upsert(), *[list(col) for col in zip(*rows)])
                latencies.append(1000 * (time.perf_counter() - t0))
            cpu = cpu_seconds(pid) - cpu0
        finally:
            await con.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
    return {"rows": size, "backend_cpu_ms_per_turn": round(1000 * cpu / turns, 4),
            "upsert_ms": summary(latencies)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--turns", type=int, default=2000)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        result = await measure(size, args.turns)
        print(f"{size:>9} rows: backend {result['backend_cpu_ms_per_turn']:.3f} CPU-ms per turn, upsert p50 "
              f"{result['upsert_ms']['p50']:.2f} ms", flush=True)  # type: ignore[index]


if __name__ == "__main__":
    asyncio.run(main())
