"""`python -m bench.pg_commits`: turns' commits to PostgreSQL from one process, at once, with the database near or far.

`--concurrency` writers each append turns to agents of their own through one `PostgresStore` (a user and an
assistant message, a run and their recall rows, fenced as a turn under its lease is), for `--seconds`, into a
throwaway schema (dropped after). `--write block` saves a memory block of each writer's instead (a memory edit:
no fence), `--write summary` a fenced summary that takes the previous one out of context (a compaction: an
eviction, an insert and the agent's reshape count). With `--net-delay-ms D` the store reaches PostgreSQL through `bench.netdelay`
(D ms each way). Reported: commits per second, each commit's wait p50 / p90 / p99, turns per transaction
(the group commit's batching) and this process's CPU per commit (the store's work; the relay's thread is in it
when there is one, the same for any code compared). Run it on two checkouts with `PYTHONPATH` at each (from
outside both) to compare them. Not part of any suite: a one-off measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.netdelay import add_argument, delayed
from bench.pgbench import add_database_argument, schema_url
from bench.stats import summary
from memory.models import Agent, Block, Changes, Message, Run, new_id
from memory.postgres_store import PostgresStore


def turn(agent_id: str, seq: int, token: int) -> Changes:
    run = Run(id=new_id("run"), agent_id=agent_id, status="completed")
    said = [Message(id=new_id("message"), agent_id=agent_id, seq=seq + i, role=role, content=f"{role} {seq}",
                    run_id=run.id) for i, role in enumerate(("user", "assistant"))]
    return Changes(messages=said, runs=[run], insert_only=True, fence=(agent_id, token))


def block_edit(block: Block, seq: int) -> Changes:
    block.value = f"edited {seq}"
    return Changes(blocks=[block])


def compaction(agent_id: str, seq: int, token: int, previous: str | None) -> Changes:
    message = Message(id=new_id("message"), agent_id=agent_id, seq=seq, role="system", content=f"summary {seq}")
    return Changes(messages=[message], evict_message_ids=[previous] if previous else [], insert_only=True,
                   fence=(agent_id, token))


WRITES = ("turn", "block", "summary")


async def measure(database_url: str | None, concurrency: int, seconds: float, net_delay_ms: float,
                  write: str = "turn") -> dict[str, float]:
    with schema_url(database_url, "pg-commits") as direct, delayed(direct, net_delay_ms) as url:
        store = PostgresStore(url, max_size=max(10, concurrency))
        await store.open()
        store.index_recall_in_commit(frozenset())
        try:
            agents = [Agent(id=new_id("agent"), name=f"w{i}") for i in range(concurrency)]
            blocks = {}
            for agent in agents:
                blocks[agent.id] = Block(id=new_id("block"), label="human", value="")
                await store.create_agent(agent, [blocks[agent.id]])
            waits: list[float] = []
            done_by = time.monotonic() + seconds

            async def writer(agent: Agent) -> None:
                seq, previous = 1, None
                while time.monotonic() < done_by:
                    began = time.perf_counter()
                    if write == "turn":
                        await store.append_turn(turn(agent.id, seq, 1))
                    elif write == "block":
                        await store.commit(block_edit(blocks[agent.id], seq))
                    else:
                        changes = compaction(agent.id, seq, 1, previous)
                        await store.commit(changes)
                        previous = changes.messages[0].id
                    waits.append((time.perf_counter() - began) * 1000)
                    seq += 2

            transactions, cpu, began = store.commit_transactions, time.process_time(), time.monotonic()
            await asyncio.gather(*(writer(agent) for agent in agents))
            elapsed, cpu = time.monotonic() - began, time.process_time() - cpu
            transactions = store.commit_transactions - transactions
        finally:
            await store.close()
    wait = summary(waits)
    return {"commits": len(waits), "per_second": len(waits) / elapsed, "p50_ms": wait["p50"], "p90_ms": wait["p90"],
            "p99_ms": wait["p99"], "turns_per_transaction": len(waits) / max(1, transactions),
            "cpu_ms_per_commit": cpu * 1000 / max(1, len(waits))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_commits", description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=16, help="writers at once (default 16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long they write (default 10)")
    parser.add_argument("--write", choices=WRITES, default="turn", help="what each commit writes (default turn)")
    add_argument(parser, "PostgreSQL's")
    add_database_argument(parser)
    args = parser.parse_args(argv)
    r = asyncio.run(measure(args.database_url, args.concurrency, args.seconds, args.net_delay_ms, args.write))
    print(f"{args.concurrency} writers of a {args.write}, {args.net_delay_ms:g} ms each way: {r['commits']} commits "
          f"({r['per_second']:.0f}/s), wait p50 {r['p50_ms']:.2f} / p90 {r['p90_ms']:.2f} / p99 {r['p99_ms']:.2f} ms, "
          f"{r['turns_per_transaction']:.1f} turns per transaction, {r['cpu_ms_per_commit']:.3f} CPU-ms per commit")


if __name__ == "__main__":
    main()
