"""memory.recall.reconcile over each backend's real store and index (DuckDB + LanceDB, PostgreSQL), in small pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pg
import pytest

from memory.duckdb_store import DuckDBStore
from memory.longterm import LanceLongTermMemory, LongTermMemory, RecallRecord
from memory.postgres_longterm import PostgresLongTermMemory
from memory.postgres_store import PostgresStore
from memory.store import Store
from memory.models import Agent, Changes, Message, new_id
from memory.recall import reconcile, recall_record

SKIP = frozenset({"memory_insert"})


@pytest.fixture(params=["embedded", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str | None]:
    """None for the embedded backend (files in tmp_path), else a URL on a fresh PostgreSQL schema."""
    if request.param == "embedded":
        yield None
        return
    server = request.getfixturevalue("postgres_url")
    schema, url = await pg.create_schema(server)
    yield url
    await pg.drop_schema(server, schema)


@pytest.fixture
async def store(database: str | None, tmp_path: Path) -> AsyncIterator[Store]:
    db: Store = DuckDBStore(str(tmp_path / "memproxy.duckdb")) if database is None else PostgresStore(database)
    await db.open()
    yield db
    await db.close()


@pytest.fixture
async def index(database: str | None, tmp_path: Path) -> AsyncIterator[LongTermMemory]:
    lt: LongTermMemory = (LanceLongTermMemory(str(tmp_path / "lance"), None) if database is None
                          else PostgresLongTermMemory(database, None))
    await lt.open()
    yield lt
    await lt.close()


def stray(agent_id: str, text: str) -> RecallRecord:
    return RecallRecord(id=new_id("message"), agent_id=agent_id, role="user", text=text,
                        created_at=datetime.now(timezone.utc))


async def test_reconcile_in_pages_repairs_both_sides(store: Store, index: LongTermMemory) -> None:
    agents = [Agent(id=new_id("agent"), name=f"a{i}") for i in range(5)]
    messages: list[Message] = []
    for agent in agents:
        await store.create_agent(agent, [])
        batch = [Message(id=new_id("message"), agent_id=agent.id, seq=i + 1, role="user", content=f"words {i}")
                 for i in range(6)]
        batch.append(Message(id=new_id("message"), agent_id=agent.id, seq=7, role="tool", name="memory_insert",
                             content="an echo of our own tool"))
        await store.commit(Changes(messages=batch))
        messages += batch
    candidates = {m.id for m in messages if recall_record(m, SKIP) is not None}
    echoes = [m for m in messages if m.id not in candidates]
    # Half the candidates indexed, plus rows that must go: strays, an echo, and two deleted agents' rows.
    indexed = [m for m in messages if m.id in candidates][::2]
    index.enqueue_messages([r for r in (recall_record(m, frozenset()) for m in indexed + echoes[:1]) if r])
    strays = [stray(agents[i].id, "never stored") for i in (0, 3)]
    gone = [new_id("agent"), new_id("agent")]
    index.enqueue_messages(strays + [stray(agent_id, "left over") for agent_id in gone])
    await index.add_passages(gone[0], [("a passage of a deleted agent", [])])
    await index.flush()

    report = await reconcile(store, index, SKIP, batch=2, page=3)
    assert (report.reindexed, report.orphan_messages, report.orphan_agents) == (
        len(candidates) - len(indexed), len(strays) + 1, len(gone))
    assert set(await index.recall_ids_all(limit=1000)) == candidates
    assert await index.agent_ids() == sorted(a.id for a in agents)
    assert (await reconcile(store, index, SKIP, batch=2, page=3)).fixed == 0


async def test_a_row_indexed_while_the_scan_runs_is_not_taken_for_an_orphan(
    store: Store, index: LongTermMemory
) -> None:
    agent = Agent(id=new_id("agent"), name="busy")
    await store.create_agent(agent, [])
    early = Message(id=new_id("message"), agent_id=agent.id, seq=1, role="user", content="first words")
    await store.commit(Changes(messages=[early]))
    index.enqueue_messages([recall_record(early, SKIP)])  # type: ignore[list-item]
    await index.flush()

    class TurnDuringScan(type(store)):  # type: ignore[misc]
        """The store as a live turn sees it: a message lands (stored, then indexed) after the first page."""

        late: Message | None = None

        async def recall_candidate_ids(self, skip_tool_names: list[str], *, after: str | None = None,
                                       limit: int = 5000) -> list[str]:
            page = await super().recall_candidate_ids(skip_tool_names, after=after, limit=limit)
            if self.late is None:
                # An id sorting before everything: the store scan has passed it when the index scan meets it.
                self.late = Message(id="message-00000000-0000-4000-8000-000000000000", agent_id=agent.id, seq=2,
                                    role="assistant", content="late words")
                await self.commit(Changes(messages=[self.late]))
                index.enqueue_messages([recall_record(self.late, SKIP)])  # type: ignore[list-item]
                await index.flush()
            return page

    where = store.path if isinstance(store, DuckDBStore) else store.dsn  # type: ignore[attr-defined]
    await store.close()
    racing = TurnDuringScan(where)
    await racing.open()
    try:
        report = await reconcile(racing, index, SKIP, page=2)
        assert report.orphan_messages == 0
        assert racing.late is not None
        assert set(await index.recall_ids_all()) == {early.id, racing.late.id}
    finally:
        await racing.close()
