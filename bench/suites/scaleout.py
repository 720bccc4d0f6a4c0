"""Scale-out: agent turns/s and CPU-seconds per turn of `memproxy serve --workers 1` and `--workers 2`.

Both runs use PostgreSQL (a fresh database on MEMPROXY_BENCH_POSTGRES_URL, default the local server)
and a Redis of the suite's own (`redis-server` on a free port, no persistence) so its command counts
are memproxy's alone. The zero-delay simulator answers; closed loop, no two workers on one agent.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import time
from typing import Any

import httpx

from bench.harness import Harness
from bench.loadgen import Result, close_all, open_conns
from bench.procs import Proc, cpu_seconds, free_port
from bench.seed import TEMPLATE_AGENT
from bench.stats import summary
from bench.suite import SuiteResult, Table
from bench.suites.common import agent_request

ADMIN_URL = os.environ.get("MEMPROXY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
WORKERS = (1, 2)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(p) for p in listing.read().split()]
    except OSError:
        return []


def _tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in [pid, *_children(pid)])


def _pids_named(name: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() == name:
                    out.append(int(pid))
        except OSError:
            continue
    return out


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


async def _admin(sql: str, url: str = ADMIN_URL) -> list[Any]:
    import asyncpg

    con = await asyncpg.connect(url, timeout=5)
    try:
        return list(await con.fetch(sql))
    finally:
        await con.close()


def _with_database(url: str, name: str) -> str:
    head, _, _ = url.rpartition("/")
    return f"{head}/{name}"


async def _db_stats(url: str, name: str) -> dict[str, float]:
    row = (await _admin(f"SELECT xact_commit, tup_inserted, tup_updated, tup_fetched, tup_returned, "
                        f"pg_database_size('{name}') AS size FROM pg_stat_database WHERE datname = '{name}'", url))[0]
    return {k: float(row[k]) for k in row.keys()}


def _redis_commands(url: str) -> tuple[float, float]:
    """(commands Redis executed, including those inside scripts; scripts called = round trips of memproxy)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        scripts = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        return float(client.info("stats")["total_commands_processed"]), float(scripts)
    finally:
        client.close()


async def _measure(h: Harness, server: Proc, agents: list[str], concurrency: int, seconds: float,
                   db: tuple[str, str], redis_url: str, redis_pid: int) -> dict[str, Any]:
    assert h.sim is not None
    headers = h.profile("zero")
    conns = await open_conns(server.port, concurrency)
    requests = [agent_request(a, headers) for a in agents]
    usable = len(requests) - len(requests) % concurrency
    results: list[Result] = []
    postgres = _pids_named("postgres")
    stats0, redis0 = await _db_stats(*db), _redis_commands(redis_url)
    cpu0 = {"memproxy": _tree_cpu(server.pid), "sim": cpu_seconds(h.sim.pid), "client": time.process_time(),
            "postgres": _cpu_of(postgres), "redis": cpu_seconds(redis_pid)}
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def worker(w: int) -> None:
        k = 0
        while time.perf_counter() < deadline:
            results.append(await conns[w].send(requests[(w + k * concurrency) % usable], "agent"))
            k += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - t0
    cpu1 = {"memproxy": _tree_cpu(server.pid), "sim": cpu_seconds(h.sim.pid), "client": time.process_time(),
            "postgres": _cpu_of(postgres), "redis": cpu_seconds(redis_pid)}
    close_all(conns)
    await asyncio.sleep(1.5)  # the recall indexer writes about a second after each turn: count its rows too
    stats1, redis1 = await _db_stats(*db), _redis_commands(redis_url)
    ok = [r for r in results if r.ok]
    turns = max(1, len(ok))
    used = {name: cpu1[name] - cpu0[name] for name in cpu0}
    return {
        "turns": len(ok), "errors": len(results) - len(ok), "turns_per_s": len(ok) / elapsed,
        "cpu_s_per_turn": {name: value / turns for name, value in used.items()},
        "cpu_pct": {name: 100 * value / elapsed for name, value in used.items()},
        "ttft_ms": summary(r.ttft_ms for r in ok if r.ttft_ms is not None),
        "postgres_per_turn": {k: (stats1[k] - stats0[k]) / turns for k in stats0},
        "redis_commands_per_turn": (redis1[0] - redis0[0]) / turns,
        "redis_round_trips_per_turn": (redis1[1] - redis0[1]) / turns,
        "first_error": next((r.error for r in results if not r.ok), None),
    }


async def run(h: Harness) -> SuiteResult:
    result = SuiteResult()
    server_bin = shutil.which("redis-server")
    try:
        await _admin("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure: no database to measure on
        result.notes.append(f"scaleout: skipped, PostgreSQL at {ADMIN_URL.rsplit('@', 1)[-1]} is unusable: {exc}")
        return result
    if server_bin is None:
        result.notes.append("scaleout: skipped, redis-server is not installed")
        return result
    name = f"memproxy_bench_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{name}"')
    db_url = _with_database(ADMIN_URL, name)
    redis_port = free_port()
    redis_proc = subprocess.Popen([server_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    smoke = h.scale.smoke
    concurrency, seconds, agents_n = (4, 1.0, 8) if smoke else (32, 8.0, 128)
    try:
        for _ in range(100):
            try:
                _redis_commands(redis_url)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        for workers in WORKERS:
            port = free_port()
            server = Proc("memproxy", ["serve", "--port", str(port), "--workers", str(workers), "--database-url",
                                       db_url, "--redis-url", redis_url, "--redis-prefix", f"w{workers}:",
                                       "--upstream-url", h.upstream, "--log-level", "warning"],
                          port, "/v1/health/", h.log_dir)
            try:
                server.wait_ready(timeout=120.0)
                async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:
                    agents = [(await client.post("/v1/agents/", json=TEMPLATE_AGENT)).json()["id"]
                              for _ in range(agents_n)]
                warm = await _measure(h, server, agents, concurrency, 1.0 if not smoke else 0.3, (db_url, name),
                                      redis_url, redis_proc.pid)
                h.log(f"scaleout: {workers} worker(s) warm ({warm['turns']} turns); measuring {seconds:.0f}s "
                      f"at concurrency {concurrency}")
                point = await _measure(h, server, agents, concurrency, seconds, (db_url, name), redis_url,
                                       redis_proc.pid)
                point["worker_pids"] = len(_children(server.pid)) or 1
                result.figures[f"workers{workers}"] = point
            finally:
                server.stop()
    finally:
        redis_proc.kill()
        redis_proc.wait(timeout=10)
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    rows = []
    for workers in WORKERS:
        p = result.figures.get(f"workers{workers}")
        if p is None:
            continue
        cpu = p["cpu_pct"]
        rows.append([workers, f"{p['turns_per_s']:.0f}", f"{1000 * p['cpu_s_per_turn']['memproxy']:.2f}",
                     f"{1000 * p['cpu_s_per_turn']['postgres']:.2f}",
                     f"{1000 * p['cpu_s_per_turn']['redis']:.3f}", f"{p['ttft_ms'].get('p50', 0):.1f}",
                     f"{p['ttft_ms'].get('p99', 0):.1f}", f"{cpu['memproxy']:.0f} / {cpu['sim']:.0f} / "
                     f"{cpu['client']:.0f} / {cpu['postgres']:.0f}", f"{p['redis_round_trips_per_turn']:.2f} ({p['redis_commands_per_turn']:.0f})",
                     f"{p['postgres_per_turn']['xact_commit']:.2f}", f"{p['postgres_per_turn']['size']:.0f}",
                     p["errors"]])
    result.tables.append(Table(
        f"scale-out: agent turns, zero-delay upstream, concurrency {concurrency}, {agents_n} agents",
        ["workers", "turns/s", "memproxy CPU ms/turn", "postgres CPU ms/turn", "redis CPU ms/turn", "TTFT p50", "TTFT p99",
         "CPU % memproxy / sim / client / postgres", "Redis round trips/turn (commands)", "PG commits/turn", "DB bytes/turn",
         "errors"], rows))
    result.notes.append("scaleout: two cores are shared by memproxy's workers, the simulator, the load generator "
                        "and PostgreSQL (and, on a shared machine, whatever else runs): the sum of the CPU column "
                        "near 200% means the machine, not memproxy, bounds turns/s. postgres CPU counts every "
                        "postgres process on the machine, including other users of the server.")
    return result
