"""What one agent turn asks of PostgreSQL and Redis, counted: `python -m bench.turn_statements [--workers N]
[--turns N] [--moving] [--log FILE]`.

Creates a throwaway database with `log_statement = 'all'` (a superuser's `ALTER DATABASE`), a redis-server of
its own on a free port, and `memproxy serve --workers N` on both with the simulator upstream; sends `--turns`
sequential turns over 4 agents, each agent on one keep-alive connection (it stays on one worker) or, with
`--moving`, a new connection per turn (the kernel picks the worker). Then prints, per turn, the statements the
server logged (from the log file, which must be readable: default the Debian path of PostgreSQL 15), the
transactions they make, `pg_stat_database.xact_commit` (flushed by backends up to ~10 s late: `--settle`), and
Redis' script calls (memproxy's round trips) and commands. Not part of any suite: a one-off measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.procs import free_port
from proxy.sim import SimConfig, run_sim_in_thread

ROOT = Path(__file__).resolve().parents[1]
# "[pid] LOG:" (log_line_prefix '%m [%p] ') or "[pid] user@database LOG:" (Debian's '%m [%p] %q%u@%d ')
STATEMENT = re.compile(r"\[(\d+)\] (?:\S*@(\S+) )?LOG:  (?:statement|execute [^:]*): (.*)")


def transactions(logged: list[tuple[str, str]]) -> int:
    """Transactions in (backend pid, statement) order: a BEGIN..COMMIT block is one, any statement outside one."""
    inside: dict[str, bool] = {}
    count = 0
    for pid, text in logged:
        if text == "BEGIN;":
            inside[pid] = True
            count += 1
        elif text in ("COMMIT;", "ROLLBACK;"):
            inside[pid] = False
        elif not inside.get(pid):
            count += 1
    return count


async def admin(url: str, sql: str) -> list[Any]:
    con = await asyncpg.connect(url, timeout=5)
    try:
        return list(await con.fetch(sql))
    finally:
        await con.close()


def redis_counts(client: Any) -> tuple[int, int]:
    stats = client.info("commandstats")
    scripts = sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))
    return int(client.info("stats")["total_commands_processed"]), int(scripts)


def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"memproxy exited with {proc.returncode}")
        try:
            if httpx.get(base + "/v1/health/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("memproxy did not start")


def send_turns(base: str, agents: list[str], turns: int, moving: bool) -> None:
    clients = {a: httpx.Client(timeout=30) for a in agents}
    for k in range(turns):
        agent = agents[k % len(agents)]
        body = {"model": agent, "messages": [{"role": "user", "content": f"turn {k}"}]}
        sent = httpx.post(base + "/v1/chat/completions", json=body, timeout=30) if moving else \
            clients[agent].post(base + "/v1/chat/completions", json=body)
        sent.raise_for_status()
    for client in clients.values():
        client.close()


async def measure(args: argparse.Namespace) -> None:
    import redis

    name = "memproxy_bench_stmts_" + secrets.token_hex(3)
    db_url = args.admin_url.rpartition("/")[0] + "/" + name
    await admin(args.admin_url, f"CREATE DATABASE {name}")
    await admin(args.admin_url, f"ALTER DATABASE {name} SET log_statement = 'all'")
    redis_port, port = free_port(), free_port()
    redis_proc = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL)
    sim_url, stop_sim = run_sim_in_thread(SimConfig())
    data_dir = tempfile.mkdtemp(prefix="memproxy-bench-stmts-")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_")}, "PYTHONPATH": str(ROOT),
           "MEMPROXY_DATABASE_URL": db_url, "MEMPROXY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "MEMPROXY_UPSTREAM_URL": sim_url, "MEMPROXY_LOG_LEVEL": "warning", "MEMPROXY_DATA_DIR": data_dir}
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port), "--workers",
                             str(args.workers)], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    client = redis.Redis(port=redis_port)
    try:
        wait_ready(base, proc)
        blocks = [{"label": "human", "value": "Name: Ada"}, {"label": "persona", "value": "I am helpful."}]
        agents = [httpx.post(base + "/v1/agents/", json={"name": f"a{i}", "memory_blocks": blocks},
                             timeout=30).json()["id"] for i in range(4)]
        send_turns(base, agents, 8, moving=True)  # warm: every agent on fresh connections
        await asyncio.sleep(args.settle)
        xact = f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{name}'"
        commits0, redis0, mark = (await admin(args.admin_url, xact))[0][0], redis_counts(client), \
            os.path.getsize(args.log)
        send_turns(base, agents, args.turns, args.moving)
        redis1 = redis_counts(client)
        await asyncio.sleep(args.settle)
        commits1 = (await admin(args.admin_url, xact))[0][0]
        with open(args.log, errors="replace") as log:
            log.seek(mark)
            logged = [(pid, " ".join(text.split())[:100]) for pid, database, text in STATEMENT.findall(log.read())
                      if database in ("", name)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        stop_sim()
        client.close()
        redis_proc.kill()
        redis_proc.wait()
        subprocess.run(["rm", "-rf", data_dir], check=False)
        await admin(args.admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    n = args.turns
    kinds = collections.Counter(text for _, text in logged)
    where = "moving (a new connection per turn)" if args.moving else "sticky (a connection per agent)"
    print(f"{args.workers} worker(s), {where}, {n} turns")
    print(f"  postgres per turn: {len(logged) / n:.2f} statements, {transactions(logged) / n:.2f} transactions "
          f"(server log); xact_commit {(commits1 - commits0) / n:.2f} (pg_stat_database, flushed late)")
    print(f"  redis per turn: {(redis1[1] - redis0[1]) / n:.2f} round trips (script calls), "
          f"{(redis1[0] - redis0[0] - 2) / n:.1f} commands")
    for text, count in kinds.most_common(20):
        print(f"  {count / n:6.2f}  {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--moving", action="store_true")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each counter reading")
    parser.add_argument("--log", default="/var/log/postgresql/postgresql-15-main.log")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
