"""`python -m bench.moving`: what an agent turn costs when the agent's turns move between two memproxy processes.

Two memproxies share one PostgreSQL schema and one Redis (a key prefix of its own, deleted after), as
replicas behind a load balancer that does not pin agents. `--agents` agents are cloned with `--size` messages
each, all in context (a window too large to compact); every agent first takes one turn on each process, so each
holds a copy of it. Then, in `--rounds` rounds, each agent takes one turn, one at a time against
`bench.fixed_upstream`: in the `sticky` arm always on the same process, in the `moving` arm on the other
process than its last turn's, whose copy the other's turns have made stale. Reported per arm: both
processes' CPU per turn (all threads, from /proc), TTFT p50 / p90 / p99 and end-to-end p50 / p99, and how
many agents the processes loaded from the store (and, where memproxy counts them, how many of those loads
kept their stale copy and read only what followed it). Arms alternate by round, so both see the same drift of
this machine.
`--net-delay-ms D` puts PostgreSQL and Redis D ms away each way (`bench.netdelay`), as across a network.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
from pathlib import Path
from typing import Any

import redis

from bench.harness import FULL, Harness
from bench.loadgen import Result, close_all, open_conns
from bench.netdelay import NetDelay, add_argument, towards
from bench.pgbench import PgBench, add_database_argument
from bench.procs import Proc, agent_cache_counts, cpu_ns_since, start_fixed_upstream, start_memproxy, thread_cpu_ns
from bench.stats import summary
from bench.suites.common import agent_request, warm_agents
from bench.suites.turncost import WINDOW

ARMS = ("sticky", "moving")


def cpu_ns(procs: list[Proc], before: list[dict[int, tuple[str, int]]]) -> int:
    """Both processes' CPU since `before` (their `thread_cpu_ns`), all threads, in ns."""
    return sum(sum(cpu_ns_since(proc.pid, was).values()) for proc, was in zip(procs, before))


async def measure(work: Path, size: int, agents: int, rounds: int, database_url: str | None,
                  redis_url: str, net_delay_ms: float = 0.0) -> dict[str, Any]:
    h = Harness(work, FULL)
    h.pg = PgBench(database_url)
    prefix = f"memproxy-bench-moving-{secrets.token_hex(4)}:"
    client = redis.Redis.from_url(redis_url)
    upstream = None
    procs: list[Proc] = []
    relays: list[NetDelay] = []
    rtt_ms = 0.0
    try:
        h.start()
        shared = h.new_data_dir("moving")
        ids = h.clone_agents(shared, agents, size, "moving", in_context=size, context_window=WINDOW)
        upstream = start_fixed_upstream(h.log_dir)
        db_url, to_redis = h.pg.url_for(shared), redis_url
        if net_delay_ms > 0:
            relays += [towards(url, net_delay_ms) for url in (db_url, redis_url)]
            db_url, to_redis = relays[0].url(db_url), relays[1].url(redis_url)
            rtt_ms = relays[1].round_trip_ms(b"*1\r\n$4\r\nPING\r\n")
        extra = ["--database-url", db_url, "--redis-url", to_redis, "--redis-prefix", prefix]
        for i in range(2):
            data = work / f"replica-{i}"
            data.mkdir()
            procs.append(start_memproxy(h.log_dir, data, upstream.base + "/v1", extra))
        errors = 0
        for proc in procs:  # the process's own first-request costs, then one turn of each agent: a copy of each
            errors += await warm_agents(h, [h.template_id] * 2, concurrency=1, port=proc.port)
            errors += await warm_agents(h, ids, concurrency=1, port=proc.port)
        conns = [(await open_conns(proc.port, 1))[0] for proc in procs]
        headers = {**h.profile("zero"), "X-Sim-Ttft-Ms": "0"}
        last = [1] * len(ids)  # every agent's last turn was on process 1
        results: dict[str, list[Result]] = {arm: [] for arm in ARMS}
        cpu = dict.fromkeys(ARMS, 0)
        counts: dict[str, dict[str, float]] = {arm: {} for arm in ARMS}
        for r in range(rounds):
            for arm in (ARMS if r % 2 == 0 else ARMS[::-1]):
                before = [agent_cache_counts(proc.base) for proc in procs]
                cpu0 = [thread_cpu_ns(proc.pid) for proc in procs]
                for a, agent in enumerate(ids):
                    on = last[a] if arm == "sticky" else 1 - last[a]
                    results[arm].append(await conns[on].send(agent_request(agent, headers), arm))
                    last[a] = on
                await asyncio.sleep(0.3)  # the turns' commits and announcements are done
                cpu[arm] += cpu_ns(procs, cpu0)
                for proc, was in zip(procs, before):
                    for key, value in agent_cache_counts(proc.base).items():
                        counts[arm][key] = counts[arm].get(key, 0.0) + value - was.get(key, 0.0)
        close_all(conns)
    finally:
        for proc in procs:
            proc.stop()
        if upstream is not None:
            upstream.stop()
        for relay in relays:
            relay.stop()
        h.close()
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    out: dict[str, Any] = {"size": size, "agents": agents, "rounds": rounds, "errors": errors, "rtt_ms": rtt_ms}
    for arm in ARMS:
        done = results[arm]
        ttft = summary([r.ttft_ms or 0.0 for r in done if r.ok])
        e2e = summary([r.e2e_ms for r in done if r.ok])
        out[arm] = {"turns": len(done), "errors": sum(not r.ok for r in done),
                    "cpu_ms_per_turn": cpu[arm] / 1e6 / max(1, len(done)),
                    "ttft_p50_ms": ttft["p50"], "ttft_p90_ms": ttft["p90"], "ttft_p99_ms": ttft["p99"],
                    "e2e_p50_ms": e2e["p50"], "e2e_p99_ms": e2e["p99"],
                    **{f"{key}_per_turn": value / max(1, len(done)) for key, value in counts[arm].items()}}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.moving", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=500, help="in-context messages per agent (default 500)")
    parser.add_argument("--agents", type=int, default=8, help="agents (default 8)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of one turn per agent, per arm (default 10)")
    add_database_argument(parser)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="the Redis both processes coordinate through (keys under a prefix of their own, "
                             "deleted after; default redis://127.0.0.1:6379/0)")
    add_argument(parser, "PostgreSQL's and Redis'")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memproxy-moving-") as work:
        r = asyncio.run(measure(Path(work), args.size, args.agents, args.rounds, args.database_url, args.redis_url,
                                args.net_delay_ms))
    away = f", PostgreSQL and Redis {r['rtt_ms']:.2f} ms away (a Redis PING's round trip)" if r["rtt_ms"] else ""
    print(f"{r['size']} in context, {r['agents']} agents, {r['rounds']} rounds ({r['errors']} warm-up errors){away}")
    for arm in ARMS:
        a = r[arm]
        loads = ", ".join(f"{key[:-len('_per_turn')]} {value:.2f}" for key, value in a.items()
                          if key.endswith("_per_turn") and key != "cpu_ms_per_turn")
        print(f"  {arm:7} {a['turns']} turns ({a['errors']} errors): {a['cpu_ms_per_turn']:.3f} CPU-ms per turn, "
              f"TTFT p50 {a['ttft_p50_ms']:.2f} / p90 {a['ttft_p90_ms']:.2f} / p99 {a['ttft_p99_ms']:.2f} ms, "
              f"end-to-end p50 {a['e2e_p50_ms']:.2f} / p99 {a['e2e_p99_ms']:.2f} ms; per turn: {loads}")


if __name__ == "__main__":
    main()
