"""The `Store` contract every backend keeps: its error types, unique message seqs, paged id scans.

Written against the interface only, run against every backend in BACKENDS: the `backend` fixture
opens a fresh database (a DuckDB file in a temp dir, a PostgreSQL schema) and gives a maker of
handles on it (each handle is a separate writer, as another process would be).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pg
import pytest

from memory.agents import AgentMemory
from memory.duckdb_store import DuckDBStore
from memory.live import LiveAgent
from memory.mcp_servers import McpServer
from memory.models import Agent, Block, Changes, HistoryTail, Message, Run, Tool, new_id
from memory.paging import id_pages
from memory.postgres_store import PostgresStore
from memory.store import Conflict, NotFound, Store, StoreError
from memory.tokens import default_counter

OpenHandle = Callable[[], Awaitable[Store]]


def duckdb_backend(tmp_path: Path) -> OpenHandle:
    path = str(tmp_path / "contract.duckdb")

    async def open_handle() -> Store:
        store = DuckDBStore(path)
        await store.open()
        return store

    return open_handle


def postgres_backend(url: str) -> OpenHandle:
    async def open_handle() -> Store:
        store = PostgresStore(url)
        await store.open()
        return store

    return open_handle


BACKENDS = ("duckdb", "postgres")


@dataclass
class Backend:
    open_handle: OpenHandle
    handles: list[Store]

    async def writer(self) -> Store:
        """Another handle on the same database: a second, independent writer."""
        store = await self.open_handle()
        self.handles.append(store)
        return store


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    schema = database = None
    if request.param == "postgres":
        database = request.getfixturevalue("postgres_url")
        schema, url = await pg.create_schema(database)
        under_test = Backend(postgres_backend(url), [])
    else:
        under_test = Backend(duckdb_backend(tmp_path), [])
    yield under_test
    for store in reversed(under_test.handles):
        await store.close()
    if schema is not None and database is not None:
        await pg.drop_schema(database, schema)


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.writer()


def message(agent_id: str, seq: int, **kw: object) -> Message:
    values: dict[str, object] = {"role": "user", "content": f"m{seq}"}
    values.update(kw)
    return Message(id=new_id("message"), agent_id=agent_id, seq=seq, **values)  # type: ignore[arg-type]


async def new_agent(store: Store, **kw: object) -> Agent:
    agent = Agent(id=new_id("agent"), name="a", **kw)  # type: ignore[arg-type]
    await store.create_agent(agent, [])
    return agent


# --- errors ---------------------------------------------------------------------------------
async def test_a_missing_block_is_named_not_reported_as_a_missing_agent(store: Store) -> None:
    ghost_block = new_id("block")
    with pytest.raises(NotFound) as created:
        await store.create_agent(Agent(id=new_id("agent"), name="a", block_ids=[ghost_block]), [])
    assert (created.value.kind, created.value.ident) == ("block", ghost_block)
    assert await store.count_agents() == 0

    agent = await new_agent(store)
    with pytest.raises(NotFound) as updated:
        await store.update_agent(replace(agent, name="renamed", block_ids=[ghost_block]))
    assert (updated.value.kind, updated.value.ident) == ("block", ghost_block)
    assert await store.get_agent(agent.id) == agent  # the failed update changed nothing


async def test_updating_a_deleted_agent_is_not_found(store: Store) -> None:
    agent = await new_agent(store)
    assert await store.delete_agent(agent.id)
    with pytest.raises(NotFound) as gone:
        await store.update_agent(agent)
    assert (gone.value.kind, gone.value.ident) == ("agent", agent.id)
    assert await store.get_agent(agent.id) is None  # no resurrection


async def test_taken_ids_conflict(store: Store) -> None:
    block = Block(id=new_id("block"), label="persona")
    await store.create_block(block)
    with pytest.raises(Conflict):
        await store.create_block(replace(block, label="other"))
    agent = await new_agent(store)
    with pytest.raises(Conflict):
        await store.create_agent(replace(agent, name="twin"), [])
    first = message(agent.id, 1)
    await store.commit(Changes(messages=[first], insert_only=True))
    with pytest.raises(Conflict):
        await store.commit(Changes(messages=[replace(first, content="again")], insert_only=True))
    assert [m.content for m in await store.list_messages(agent.id)] == ["m1"]


async def test_every_store_error_shares_one_base() -> None:
    assert issubclass(NotFound, StoreError) and issubclass(Conflict, StoreError)
    assert not issubclass(NotFound, LookupError)  # a caller's `except LookupError` must not swallow it


# --- message seq ----------------------------------------------------------------------------
async def test_a_seq_is_held_by_one_message_per_agent(store: Store) -> None:
    agent, other = await new_agent(store), await new_agent(store)
    await store.commit(Changes(messages=[message(agent.id, 1), message(agent.id, 2)]))
    await store.commit(Changes(messages=[message(other.id, 1)]))  # seqs are per agent

    run = Run(id=new_id("run"), agent_id=agent.id)
    with pytest.raises(Conflict):
        await store.commit(Changes(messages=[message(agent.id, 3), message(agent.id, 2)], runs=[run]))
    assert [m.seq for m in await store.list_messages(agent.id)] == [1, 2]
    assert await store.get_run(run.id) is None  # the whole commit failed

    with pytest.raises(Conflict):
        await store.commit(Changes(messages=[message(agent.id, 5), message(agent.id, 5)], insert_only=True))
    assert (await store.history_since(agent.id, 0)).top == 2


async def test_rewriting_a_message_keeps_its_seq_without_conflict(store: Store) -> None:
    agent = await new_agent(store)
    first = message(agent.id, 1)
    await store.commit(Changes(messages=[first]))
    await store.commit(Changes(messages=[replace(first, content="edited", in_context=False)]))
    assert [(m.id, m.content) for m in await store.list_messages(agent.id)] == [(first.id, "edited")]


async def test_two_writers_never_store_the_same_seq(backend: Backend, store: Store) -> None:
    other = await backend.writer()
    agent = await new_agent(store)
    for seq in range(1, 21):
        # Both believe `seq` is next, as two processes with their own caches would.
        outcomes = await asyncio.gather(
            store.commit(Changes(messages=[message(agent.id, seq, content="left")], insert_only=True)),
            other.commit(Changes(messages=[message(agent.id, seq, content="right")], insert_only=True)),
            return_exceptions=True,
        )
        assert sum(outcome is None for outcome in outcomes) == 1, outcomes
        assert all(outcome is None or isinstance(outcome, Conflict) for outcome in outcomes), outcomes
    stored = await other.list_messages(agent.id, limit=None)
    assert [m.seq for m in stored] == list(range(1, 21))


async def test_a_conflicting_commit_fails_alone_among_concurrent_ones(store: Store) -> None:
    agents = [await new_agent(store) for _ in range(8)]
    for agent in agents:
        await store.commit(Changes(messages=[message(agent.id, 1)]))
    clash = Changes(messages=[message(agents[0].id, 1, content="duplicate")])
    good = [Changes(messages=[message(agent.id, 2)]) for agent in agents]
    outcomes = await asyncio.gather(*(store.commit(c) for c in [*good[:4], clash, *good[4:]]),
                                    return_exceptions=True)
    assert isinstance(outcomes[4], Conflict)
    assert [o for i, o in enumerate(outcomes) if i != 4] == [None] * 8
    for agent in agents:
        assert [m.seq for m in await store.list_messages(agent.id)] == [1, 2]
    assert "duplicate" not in {m.content for m in await store.list_messages(agents[0].id)}


# --- paged id scans -------------------------------------------------------------------------
async def test_agent_ids_come_in_ascending_keyset_pages(store: Store) -> None:
    ids = sorted([(await new_agent(store)).id for _ in range(7)])
    assert await store.agent_ids() == ids
    assert await store.agent_ids(limit=3) == ids[:3]
    assert await store.agent_ids(after=ids[2], limit=3) == ids[3:6]
    assert await store.agent_ids(after=ids[-1]) == []
    assert await store.agent_ids(after="agent-0") == ids  # a cursor need not exist
    assert [page async for page in id_pages(lambda a, n: store.agent_ids(after=a, limit=n), 3)] == \
        [ids[:3], ids[3:6], ids[6:]]


async def test_recall_candidates_filter_and_page(store: Store) -> None:
    agent = await new_agent(store)
    kept = [
        message(agent.id, 1, role="user", content="hello"),
        message(agent.id, 2, role="assistant", content="hi"),
        message(agent.id, 3, role="tool", name="weather", content="sunny"),
        message(agent.id, 4, role="tool", name=None, content="unnamed result"),
    ]
    skipped = [
        message(agent.id, 5, role="tool", name="memory_insert", content="echo"),
        message(agent.id, 6, role="assistant", content=None),
        message(agent.id, 7, role="assistant", content=""),
        message(agent.id, 8, role="system", content="summary"),
    ]
    await store.commit(Changes(messages=kept + skipped))
    wanted = sorted(m.id for m in kept)
    assert await store.recall_candidate_ids(["memory_insert"]) == wanted
    pages = [page async for page in id_pages(
        lambda a, n: store.recall_candidate_ids(["memory_insert"], after=a, limit=n), 2)]
    assert pages == [wanted[:2], wanted[2:]]
    assert await store.recall_candidate_ids([], after=wanted[-1]) == sorted(
        i for i in (m.id for m in kept + skipped[:1]) if i > wanted[-1])


def _tool(name: str) -> Tool:
    schema = {"name": name, "description": "d", "parameters": {"type": "object", "properties": {}}}
    return Tool(id=new_id("tool"), name=name, source_code=f"def {name}():\n    return 1\n", json_schema=schema,
                description="d", tags=["x"], metadata={"k": 1})


async def test_custom_tools_round_trip_and_keep_names_unique(store: Store) -> None:
    first, second = _tool("first_tool"), _tool("second_tool")
    await store.create_tool(first)
    await store.create_tool(second)
    assert [t.id for t in await store.list_tools()] == [first.id, second.id]
    got = await store.get_tool(first.id)
    assert got is not None and (got.name, got.json_schema, got.tags, got.metadata) == (
        "first_tool", first.json_schema, ["x"], {"k": 1})
    with pytest.raises(Conflict):
        await store.create_tool(replace(_tool("first_tool")))
    with pytest.raises(Conflict):
        await store.create_tool(replace(second, name="third_tool"))

    await store.update_tool(replace(first, source_code="def first_tool():\n    return 2\n", description="new"))
    got = await store.get_tool(first.id)
    assert got is not None and got.description == "new" and "return 2" in got.source_code
    with pytest.raises(Conflict):
        await store.update_tool(replace(first, name="second_tool"))
    with pytest.raises(NotFound):
        await store.update_tool(_tool("never_created"))

    assert await store.delete_tool(first.id) is True
    assert await store.delete_tool(first.id) is False
    assert await store.get_tool(first.id) is None
    assert [t.name for t in await store.list_tools()] == ["second_tool"]


async def test_an_agents_tool_environment_persists(store: Store) -> None:
    agent = Agent(id=new_id("agent"), name="env", tool_env={"API_KEY": "sk-secret"})
    await store.create_agent(agent, [])
    got = await store.get_agent(agent.id)
    assert got is not None and got.tool_env == {"API_KEY": "sk-secret"}
    await store.update_agent(replace(got, tool_env={}))
    listed = await store.list_agents()
    assert [a.tool_env for a in listed] == [{}]


async def test_mcp_servers_round_trip_with_their_secrets_and_keep_names_unique(store: Store) -> None:
    remote = McpServer(id=new_id("mcp_server"), server_name="remote", type="streamable_http",
                       server_url="https://mcp.example.com/mcp", auth_header="X-Key", auth_token="tok-secret",
                       custom_headers={"X-Tenant": "t1"})
    local = McpServer(id=new_id("mcp_server"), server_name="local", type="stdio", command="python",
                      args=["-m", "server"], env={"API_KEY": "sk-local"})
    await store.create_mcp_server(remote)
    await store.create_mcp_server(local)
    got = await store.list_mcp_servers()
    assert [s.id for s in got] == [remote.id, local.id]
    assert (got[0].auth_header, got[0].auth_token, got[0].custom_headers, got[0].headers()) == (
        "X-Key", "tok-secret", {"X-Tenant": "t1"}, {"X-Tenant": "t1", "X-Key": "tok-secret"})
    assert (got[1].command, got[1].args, got[1].env, got[1].server_url) == ("python", ["-m", "server"],
                                                                           {"API_KEY": "sk-local"}, None)
    assert got[0].created_at == remote.created_at
    with pytest.raises(Conflict):
        await store.create_mcp_server(replace(local, id=new_id("mcp_server")))

    spec = {"name": "add", "description": "Add.", "input_schema": {"type": "object", "properties": {}}}
    await store.update_mcp_server(replace(local, tools=[spec]))
    assert [s.tools for s in await store.list_mcp_servers()] == [[], [spec]]
    with pytest.raises(NotFound):
        await store.update_mcp_server(replace(local, id=new_id("mcp_server")))
    assert await store.delete_mcp_server(remote.id) is True
    assert await store.delete_mcp_server(remote.id) is False
    assert [s.server_name for s in await store.list_mcp_servers()] == ["local"]


# --- bringing a stale copy up to date -------------------------------------------------------
async def test_history_since_reads_what_follows_a_seq_and_counts_reshapes(store: Store) -> None:
    agent = await new_agent(store)
    assert await store.history_since(agent.id, 0) == HistoryTail(new=[], reshapes=0, top=0, added=0)
    messages = [message(agent.id, seq) for seq in range(1, 9)]
    await store.append_turn(Changes(messages=messages[:4], insert_only=True))
    await store.append_turn(Changes(messages=messages[4:], insert_only=True))
    assert (await store.history_since(agent.id, 0)).reshapes == 0  # only appended to
    await store.commit(Changes(evict_message_ids=[messages[1].id]))  # seq 2 leaves the context, not recall
    await store.append_turn(Changes(messages=[message(agent.id, 9, in_context=False)], insert_only=True))

    tail = await store.history_since(agent.id, 5)
    assert [(m.id, m.content) for m in tail.new] == [(m.id, m.content) for m in messages[5:]]
    assert (tail.reshapes, tail.top, tail.added) == (1, 9, 4)  # out of context, seq 9 still counts for both
    whole = await store.history_since(agent.id, 0)
    assert [m.seq for m in whole.new] == [1, 3, 4, 5, 6, 7, 8] and (whole.top, whole.added) == (9, 9)
    assert await store.history_since(agent.id, 9) == HistoryTail(new=[], reshapes=1, top=0, added=0)
    assert await store.history_since(new_id("agent"), 3) == HistoryTail(new=[], reshapes=0, top=0, added=0)


async def test_every_write_of_a_history_but_a_turns_append_is_a_reshape(store: Store) -> None:
    agent, bystander = await new_agent(store), await new_agent(store)

    async def reshapes() -> tuple[int, int]:
        return ((await store.history_since(agent.id, 0)).reshapes, (await store.history_since(bystander.id, 0)).reshapes)

    first = [message(agent.id, 1), message(agent.id, 2)]
    await store.append_turn(Changes(messages=first, insert_only=True))
    await store.append_turn(Changes(messages=[message(agent.id, 3), message(bystander.id, 1)], insert_only=True))
    assert await reshapes() == (0, 0)
    # A turn's own eviction (an agent that starts every turn afresh), journaled or not: one reshape.
    await store.append_turn(Changes(messages=[message(agent.id, 4)], evict_message_ids=[first[0].id],
                                    insert_only=True))
    assert await reshapes() == (1, 0)
    # Messages written by a plain commit (a summary, an import into the agent, a rewrite): a reshape each.
    await store.commit(Changes(messages=[message(agent.id, 5)], insert_only=True))
    assert await reshapes() == (2, 0)
    await store.commit(Changes(messages=[replace(first[1], content="rewritten")]))
    assert await reshapes() == (3, 0)
    await store.reset_messages(agent.id)
    assert await reshapes() == (4, 0)
    assert [m.seq for m in (await store.history_since(bystander.id, 0)).new] == [1]
    # A write that fails reshapes nothing.
    with pytest.raises(Conflict):
        await store.commit(Changes(messages=[message(agent.id, 5)], insert_only=True))
    assert await reshapes() == (4, 0)


async def _agent_with_history(memory: AgentMemory, turns: int) -> LiveAgent:
    live = await memory.create_agent(Agent(id=new_id("agent"), name="a", system="You are a test agent."), [])
    await _talk(memory, live, turns)
    return live


async def _talk(memory: AgentMemory, live: LiveAgent, turns: int) -> None:
    for turn in range(turns):
        said = [memory.new_message(live, "user", f"question {turn} of {live.next_seq}"),
                memory.new_message(live, "assistant", f"answer {turn}")]
        await memory.commit_turn(live.id, Changes(messages=said, insert_only=True))


def _upstream_view(live: LiveAgent) -> tuple[list[tuple[str, str | None]], bytes, int, int, int]:
    counter = default_counter()
    return ([(m.id, m.content) for m in live.messages], bytes(live.in_context.joined(live.messages, counter)),
            live.in_context.tokens(live.messages, counter), live.next_seq, live.recall_count)


async def test_a_stale_copy_is_brought_up_to_date_with_what_another_writer_added(store: Store) -> None:
    here, there = AgentMemory(store), AgentMemory(store)  # two processes' caches (one DuckDB file has one writer)
    live = await _agent_with_history(here, 30)
    _upstream_view(live)  # encoded and counted here
    kept = list(live.messages)

    other = await there.get(live.id)  # another process takes two turns...
    assert other is not None
    await _talk(there, other, 2)
    here.forget(live.id, stale=True)  # ...and says so: this copy is stale
    assert here.peek(live.id) is None

    fresh = await here.get(live.id)
    assert fresh is not None and here.refreshes == 1 and here.loads == 1
    # The copy's 60 messages are the very objects it held, its encodings and counts carried over; the 4 new read.
    assert all(a is b for a, b in zip(fresh.messages, kept)) and len(fresh.messages) == 64
    assert fresh.in_context is live.in_context
    whole = await AgentMemory(store).get(live.id)  # what a load from nothing reads
    assert whole is not None
    assert _upstream_view(fresh) == _upstream_view(whole)
    assert fresh.messages[-1].content == "answer 1" and fresh.next_seq == 65 and fresh.recall_count == 64


async def test_an_agents_attached_blocks_are_read_by_its_id(store: Store) -> None:
    first, second, other = (Block(id=new_id("block"), label=label) for label in ("human", "persona", "notes"))
    agent = Agent(id=new_id("agent"), name="a", block_ids=[first.id, second.id])
    await store.create_agent(agent, [first, second])
    await store.create_agent(Agent(id=new_id("agent"), name="b", block_ids=[other.id]), [other])
    assert sorted(b.id for b in await store.attached_blocks(agent.id)) == sorted([first.id, second.id])
    await store.update_agent(replace(agent, block_ids=[second.id]))
    assert [(b.id, b.label) for b in await store.attached_blocks(agent.id)] == [(second.id, "persona")]
    assert await store.attached_blocks(new_id("agent")) == []


async def test_a_stale_copy_whose_blocks_changed_elsewhere_loads_the_blocks_the_agent_has_now(store: Store) -> None:
    here, there = AgentMemory(store), AgentMemory(store)
    kept, dropped = Block(id=new_id("block"), label="human", value="old"), Block(id=new_id("block"), label="persona")
    live = await here.create_agent(Agent(id=new_id("agent"), name="a", block_ids=[kept.id, dropped.id]),
                                   [kept, dropped])
    other = await there.get(live.id)
    assert other is not None
    # Elsewhere: one block edited, one detached, a new one attached.
    await there.save_block(replace(kept, value="new"))
    added = Block(id=new_id("block"), label="notes", value="fresh")
    await there.create_block(added)
    other = await there.detach_block(other, dropped.id)
    await there.attach_block(other, added.id)
    here.forget(live.id, stale=True)

    fresh = await here.get(live.id)  # the copy's blocks were read alongside its record: a guess, not the answer
    assert fresh is not None
    assert [(b.id, b.value) for b in fresh.blocks] == [(kept.id, "new"), (added.id, "fresh")]
    assert (await here.memory_figures())["blocks"] == 2  # the detached block read ahead is not held


async def test_a_stale_copy_whose_history_was_reshaped_elsewhere_is_read_whole(store: Store) -> None:
    here, there = AgentMemory(store), AgentMemory(store)
    live = await _agent_with_history(here, 10)
    _upstream_view(live)
    other = await there.get(live.id)
    assert other is not None
    # Elsewhere, the 12 oldest messages go into a summary put first: appending alone did not make this history.
    gone = {m.id for m in other.messages[:12]}
    await there.put_summary(other, "they talked", {"kind": "summary", "hidden": 12}, gone)
    await _talk(there, other, 1)
    here.forget(live.id, stale=True)

    fresh = await here.get(live.id)
    assert fresh is not None and here.refreshes == 0 and here.loads == 1
    whole = await AgentMemory(store).get(live.id)
    assert whole is not None
    assert _upstream_view(fresh) == _upstream_view(whole)
    assert fresh.messages[0].content == "they talked" and len(fresh.messages) == 1 + 8 + 2
    assert fresh.in_context is live.in_context  # the 8 it still holds are not encoded again


async def test_a_copy_that_may_hold_an_unstored_message_is_not_kept(store: Store) -> None:
    memory = AgentMemory(store)
    live = await _agent_with_history(memory, 2)
    memory.forget(live.id, stale=True)
    memory.forget(live.id)  # a turn failed to store what it added: the copy, stale or not, is not trusted
    fresh = await memory.get(live.id)
    assert fresh is not None and memory.refreshes == 0 and fresh.messages is not live.messages
    memory.new_message(fresh, "user", "never stored")
    memory.forget(live.id)
    again = await memory.get(live.id)
    assert again is not None and memory.refreshes == 0 and [m.content for m in again.messages][-1] == "answer 1"
    memory.forget(live.id, stale=True)
    memory.clear()  # announcements were missed: nothing cached is trusted, stale copies included
    await memory.get(live.id)
    assert memory.refreshes == 0


async def test_stale_copies_count_against_the_cache_capacity_and_go_first(store: Store) -> None:
    memory = AgentMemory(store, capacity=3)
    agents = [await _agent_with_history(memory, 1) for _ in range(3)]
    memory.forget(agents[0].id, stale=True)
    memory.forget(agents[1].id, stale=True)
    fourth = await _agent_with_history(memory, 1)  # four in all now: the older stale copy goes
    figures = await memory.memory_figures()
    assert (figures["agents"], figures["stale_agents"]) == (2, 1)
    await memory.get(agents[1].id)
    assert memory.refreshes == 1  # the copy still kept
    await memory.get(agents[0].id)
    assert memory.refreshes == 1  # read whole
    figures = await memory.memory_figures()
    assert (figures["agents"], figures["stale_agents"]) == (3, 0)
    assert memory.peek(agents[2].id) is None and memory.peek(fourth.id) is not None  # the least recently used left
