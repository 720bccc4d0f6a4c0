"""`python -m bench.pg_load`: how long loading an agent from PostgreSQL takes, with the database near or far.

Creates `--agents` agents with `--blocks` blocks and `--messages` stored messages each through a `PostgresStore`
in a throwaway schema (dropped after), then loads each once from nothing (a fresh `AgentMemory`, as the first turn
after a start does) and reports the loads' wall time p50 / p90 / max. With `--net-delay-ms D` the store reaches
PostgreSQL through `bench.netdelay` (D ms each way), where what a load costs is how many round trips it waits
for. Run it on two checkouts with `PYTHONPATH` at each (from outside both) to compare them. Not part of any
suite: a one-off measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.netdelay import add_argument, delayed
from bench.pgbench import add_database_argument, schema_url
from bench.stats import summary
from memory.agents import AgentMemory
from memory.models import Agent, Block, Changes, Message, new_id
from memory.postgres_store import PostgresStore


async def measure(database_url: str | None, agents: int, blocks: int, messages: int,
                  net_delay_ms: float) -> dict[str, float]:
    with schema_url(database_url, "pg-load") as direct:
        seeding = PostgresStore(direct)  # filled directly: the relay only slows what is measured
        await seeding.open()
        ids = []
        try:
            for _ in range(agents):
                own = [Block(id=new_id("block"), label=f"block{b}", value="x" * 200) for b in range(blocks)]
                agent = Agent(id=new_id("agent"), name="loaded", block_ids=[b.id for b in own])
                await seeding.create_agent(agent, own)
                said = [Message(id=new_id("message"), agent_id=agent.id, seq=i + 1,
                                role="user" if i % 2 == 0 else "assistant", content=f"message {i}")
                        for i in range(messages)]
                await seeding.commit(Changes(messages=said, insert_only=True))
                ids.append(agent.id)
        finally:
            await seeding.close()
        with delayed(direct, net_delay_ms) as url:
            store = PostgresStore(url)
            await store.open()
            try:
                await AgentMemory(store).get(ids[0])  # the pool's connection and statements, warmed on one agent
                took = []
                for agent_id in ids[1:]:
                    began = time.perf_counter()
                    live = await AgentMemory(store).get(agent_id)
                    took.append((time.perf_counter() - began) * 1000)
                    assert live is not None and len(live.blocks) == blocks and len(live.messages) == messages
            finally:
                await store.close()
    s = summary(took)
    return {"loads": len(took), "p50_ms": s["p50"], "p90_ms": s["p90"], "max_ms": s["max"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_load", description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=41, help="agents (default 41: one warms up, 40 measured)")
    parser.add_argument("--blocks", type=int, default=4, help="blocks per agent (default 4)")
    parser.add_argument("--messages", type=int, default=50, help="stored messages per agent (default 50)")
    add_argument(parser, "PostgreSQL's")
    add_database_argument(parser)
    args = parser.parse_args(argv)
    r = asyncio.run(measure(args.database_url, args.agents, args.blocks, args.messages, args.net_delay_ms))
    print(f"{r['loads']} loads from nothing, {args.blocks} blocks and {args.messages} messages each, "
          f"{args.net_delay_ms:g} ms each way: p50 {r['p50_ms']:.2f} / p90 {r['p90_ms']:.2f} / max "
          f"{r['max_ms']:.2f} ms")


if __name__ == "__main__":
    main()
