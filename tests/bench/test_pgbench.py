"""bench --backend postgres with --database-url: the seeding works in the given database and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pg

from bench.pgbench import PgBench
from memory.models import Agent, Block, new_id
from memory.postgres_longterm import PostgresLongTermMemory
from memory.postgres_store import PostgresStore


async def _template(url: str) -> str:
    store = PostgresStore(url)
    await store.open()
    try:
        blocks = [Block(id=new_id("block"), label=label, value=f"{label} text") for label in ("persona", "human")]
        agent = Agent(id=new_id("agent"), name="template", block_ids=[b.id for b in blocks])
        await store.create_agent(agent, blocks)
        return agent.id
    finally:
        await store.close()


async def _recall_hits(url: str, agent_id: str) -> int:
    lt = PostgresLongTermMemory(url)
    await lt.open()
    try:
        return len(await lt.search_recall(agent_id, "dog", mode="fts", limit=100))
    finally:
        await lt.close()


def test_seeding_in_a_given_database_clones_agents_with_history_and_drops_its_schemas(
        postgres_url: str, tmp_path: Path) -> None:
    before = pg.run_blocking(pg.bench_schemas(postgres_url))
    bench = PgBench(postgres_url)
    try:
        assert bench.owned_database is None  # a given database is used, never dropped
        template, data = tmp_path / "template", tmp_path / "data"
        template_id = pg.run_blocking(_template(bench.url_for(template)))
        bench.copy(template, data)
        ids = bench.clone_agents(data, template_id, 3, 10, "t", autoclear=False, in_context=4)
        assert len(set(ids)) == 3
        # The template agent and its two blocks came along; each clone has its own blocks and 10 messages.
        assert bench.count_rows(data) == {"agents": 4, "blocks": 8, "messages": 30, "runs": 0}
        assert bench.count_rows(template) == {"agents": 1, "blocks": 2, "messages": 0, "runs": 0}

        async def in_context(url: str) -> list[int]:
            import asyncpg

            con = await asyncpg.connect(url)
            try:
                return [r[0] for r in await con.fetch(
                    "SELECT seq FROM messages WHERE agent_id = $1 AND in_context ORDER BY seq", ids[0])]
            finally:
                await con.close()

        assert pg.run_blocking(in_context(bench.url_for(data))) == [7, 8, 9, 10]
        # Recall rows were seeded with the messages: the user questions are found at once.
        assert pg.run_blocking(_recall_hits(bench.url_for(data), ids[0])) == 5
        assert len(pg.run_blocking(pg.bench_schemas(postgres_url)) - before) == 2
    finally:
        bench.close()
    assert pg.run_blocking(pg.bench_schemas(postgres_url)) == before
