"""The DuckDB turn journal against real files: turns acknowledged from it, applied in groups, replayed after a kill.

Crash tests run a real child process that acknowledges turns and is SIGKILLed before the tables get them;
the parent then opens the data dir as a restarted server would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import orjson
import pytest

from helpers import os_thread_names
from memory import duckdb_connection, duckdb_journal, duckdb_rows
from memory.duckdb_journal import read_records
from memory.duckdb_store import DuckDBStore
from memory.models import Agent, Changes, Message, Run, new_id
from memory.store import StoreUnavailable

REPO_ROOT = Path(__file__).resolve().parents[2]


def turn(agent_id: str, seq: int) -> Changes:
    run = Run(id=new_id("run"), agent_id=agent_id, status="completed", usage={"total_tokens": 3})
    messages = [Message(id=new_id("message"), agent_id=agent_id, seq=seq + i, role=role, content=f"m{seq + i}",
                        run_id=run.id) for i, role in enumerate(("user", "assistant"))]
    return Changes(messages=messages, runs=[run], insert_only=True)


@pytest.fixture
async def duck(tmp_path: Path) -> AsyncIterator[DuckDBStore]:
    db = DuckDBStore(str(tmp_path / "memproxy.duckdb"))
    await db.open()
    yield db
    await db.close()


async def new_agent(db: DuckDBStore) -> Agent:
    agent = Agent(id=new_id("agent"), name="j")
    await db.create_agent(agent, [])
    return agent


def size_of(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:  # the journal's thread deletes a file the tables hold all of
        return 0


def table_rows(path: str, sql: str) -> list[tuple[object, ...]]:
    """Read the DuckDB file directly, as it is on disk, without the store (and so without its journal)."""
    con = duckdb.connect(path, read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_turns_sent_one_at_a_time_share_transactions_and_are_read_back_at_once(duck: DuckDBStore) -> None:
    agent = await new_agent(duck)
    before = duck.commit_transactions
    turns = [turn(agent.id, 1 + 2 * i) for i in range(20)]
    for changes in turns:
        await duck.append_turn(changes)  # each one acknowledged before the next is sent
    # Without the journal each turn is its own transaction (20); with it, one or two groups.
    assert duck.commit_transactions - before <= 4
    assert await duck.list_messages(agent.id, limit=None) == [m for c in turns for m in c.messages]
    assert [r.id for r in await duck.list_runs(agent_id=agent.id, limit=None)] == [c.runs[0].id for c in reversed(turns)]


async def test_records_sent_together_are_flushed_by_one_queued_flush_not_one_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a flush waits for the journal's thread, later records join it: no empty flush per record."""
    flushes = 0
    real_flush = duckdb_journal.Journal._flush

    def counted(self: duckdb_journal.Journal) -> None:
        nonlocal flushes
        flushes += 1
        real_flush(self)

    monkeypatch.setattr(duckdb_journal.Journal, "_flush", counted)
    journal = duckdb_journal.Journal(str(tmp_path / "j.journal"), lambda: 0)
    journal.open()
    try:
        agent_id = new_id("agent")
        records = [duckdb_journal.JournalRecord(seq, [duckdb_rows.message_row(m, True) for m in
                                                      turn(agent_id, 2 * seq - 1).messages], [], [])
                   for seq in range(1, 41)]
        # All submitted in one go on the loop, as concurrent turns are; the first flush may start at once.
        await asyncio.gather(*[journal.submit(record) for record in records])
        assert journal.durable == 40
        assert [r.seq for r in read_records(journal.path)] == list(range(1, 41))
        assert flushes <= 3 and journal.syncs <= 3  # one per record before: 40 executor jobs, most of them empty
        more = journal.submit(duckdb_journal.JournalRecord(41, [], [], []))  # after the queue emptied: a new one
        await more
        assert journal.durable == 41 and flushes <= 4
    finally:
        journal.close()


async def test_the_journal_and_database_threads_carry_their_names_for_the_os(duck: DuckDBStore) -> None:
    """bench.paced and top -H tell the threads apart by /proc/<pid>/task/*/comm, which Python does not set."""
    agent = await new_agent(duck)
    await duck.append_turn(turn(agent.id, 1))
    assert len(await duck.list_messages(agent.id, limit=None)) == 2
    names = os_thread_names()
    assert {"journal", "duckdb"} <= names


async def test_a_group_lands_by_itself_and_the_journal_is_emptied_at_close(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_connection, "APPLY_DELAY_S", 0.2)
    path = str(tmp_path / "memproxy.duckdb")
    db = DuckDBStore(path)
    await db.open()
    agent = await new_agent(db)
    await db.append_turn(turn(agent.id, 1))
    assert len(read_records(path + ".journal")) == 1
    await asyncio.sleep(duckdb_connection.APPLY_DELAY_S * 3)  # no read needed: the timer applies it
    assert db.commit_transactions >= 1
    await db.close()
    assert os.path.getsize(path + ".journal") == 0
    assert table_rows(path, "SELECT count(*) FROM messages") == [(2,)]
    assert oct(os.stat(path + ".journal").st_mode & 0o777) == "0o600"


KILLED_WRITER = textwrap.dedent('''
    import asyncio, os, signal, sys
    from memory import duckdb_connection
    from memory.duckdb_store import DuckDBStore
    from memory.models import Changes, Message, Run

    from memory import duckdb_journal
    duckdb_connection.APPLY_DELAY_S = 3600  # nothing reaches the tables before the kill
    duckdb_journal.TRUNCATE_AT = int(sys.argv[5])

    async def main(path, agent_id, turns, evict):
        db = DuckDBStore(path)
        await db.open()
        first = None
        for i in range(turns):
            run = Run(id=f"run-{i}", agent_id=agent_id, status="completed")
            messages = [Message(id=f"message-{i}-{k}", agent_id=agent_id, seq=2 * i + k + 1, role="user",
                                content=f"turn {i} part {k}", run_id=run.id) for k in range(2)]
            # "turn-evict": the last turn takes the first message out of context (an agent cleared every turn).
            gone = ["message-0-0"] if evict == "turn-evict" and i == turns - 1 else []
            await db.append_turn(Changes(messages=messages, runs=[run], evict_message_ids=gone, insert_only=True))
        if evict == "evict":
            # A plain commit after journaled turns: they reach the tables first, in order.
            await db.commit(Changes(evict_message_ids=["message-0-0"]))
        print("acknowledged", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
''')


async def killed_after(tmp_path: Path, turns: int, evict: str = "-",
                       truncate_at: int = duckdb_journal.TRUNCATE_AT) -> tuple[str, str]:
    """A data dir whose writer acknowledged `turns` turns and was SIGKILLed; returns (database path, agent id).

    `evict`: "evict" for a plain commit evicting the first message after the turns, "turn-evict" for the last
    turn evicting it itself.
    """
    path = str(tmp_path / "memproxy.duckdb")
    db = DuckDBStore(path)
    await db.open()
    agent = await new_agent(db)
    await db.close()
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    child = subprocess.run([sys.executable, str(script), path, agent.id, str(turns), evict,
                            str(truncate_at)],
                           capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT),
                           env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.strip() == "acknowledged"
    return path, agent.id


async def test_turns_acknowledged_before_a_kill_are_applied_at_the_next_open(tmp_path: Path) -> None:
    path, agent_id = await killed_after(tmp_path, 5)
    # On disk: the journal holds the five turns, the tables none of them.
    assert [r.seq for r in read_records(path + ".journal")] == [1, 2, 3, 4, 5]
    assert table_rows(path, "SELECT count(*) FROM messages") == [(0,)]

    db = DuckDBStore(path)
    await db.open()
    try:
        messages = await db.list_messages(agent_id, limit=None)
        assert [(m.id, m.seq, m.content) for m in messages] == [
            (f"message-{i}-{k}", 2 * i + k + 1, f"turn {i} part {k}") for i in range(5) for k in range(2)]
        assert messages[0].created_at.tzinfo is not None
        assert sorted(r.id for r in await db.list_runs(agent_id=agent_id, limit=None)) == [f"run-{i}" for i in range(5)]
        assert os.path.getsize(path + ".journal") == 0  # applied, then started afresh
        assert (await db.history_since(agent_id, 0)).reshapes == 0  # turns only appended to the history
        # New turns number on from the old ones and land too.
        await db.append_turn(turn(agent_id, 11))
        assert await db.count_messages(agent_id) == 12
    finally:
        await db.close()
    assert table_rows(path, "SELECT applied FROM journal_state") == [(6,)]


async def messages_after_reopen(path: str, agent_id: str) -> int:
    """The agent's stored messages once the store at `path` is opened again (its journal replayed)."""
    db = DuckDBStore(path)
    await db.open()
    try:
        return await db.count_messages(agent_id)
    finally:
        await db.close()


async def test_turns_in_both_files_after_the_journal_moved_on_are_all_applied(tmp_path: Path) -> None:
    path, agent_id = await killed_after(tmp_path, 12, truncate_at=2000)
    first, second = read_records(path + ".journal"), read_records(path + ".journal.1")
    assert first and second  # the first file filled up and writing moved to the second
    assert [r.seq for r in first + second] == list(range(1, 13))
    assert await messages_after_reopen(path, agent_id) == 24
    assert not os.path.exists(path + ".journal.1")


async def test_the_journal_stays_bounded_while_the_tables_are_always_a_little_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_journal, "TRUNCATE_AT", 20_000)
    monkeypatch.setattr(duckdb_connection, "APPLY_DELAY_S", 0.02)
    path = str(tmp_path / "memproxy.duckdb")
    db = DuckDBStore(path)
    await db.open()
    agents = [await new_agent(db) for _ in range(8)]
    record = len(duckdb_journal.encode(duckdb_journal.JournalRecord(
        1, [duckdb_rows.message_row(m, True) for m in turn(agents[0].id, 1).messages],
        [duckdb_rows.run_row(turn(agents[0].id, 1).runs[0])], [])))
    turns = 1500
    largest = 0

    async def writer(agent: Agent) -> None:
        nonlocal largest
        for i in range(turns):  # no pause: some turn is always on its way to the tables
            await db.append_turn(turn(agent.id, 1 + 2 * i))
            largest = max(largest, sum(map(size_of, (path + ".journal", path + ".journal.1"))))

    started = time.monotonic()
    await asyncio.gather(*(writer(agent) for agent in agents))
    per_second = len(agents) * turns * record / (time.monotonic() - started)
    try:
        # Two files of the mark at most, plus what arrives while a group is on its way: not all that was ever
        # written (it grew without bound when the one file was emptied only once all of it was in the tables).
        bound = 2 * 20_000 + 12 * duckdb_connection.APPLY_DELAY_S * per_second
        assert largest < bound < len(agents) * turns * record / 2
        assert [await db.count_messages(agent.id) for agent in agents] == [2 * turns] * 8
    finally:
        await db.close()


async def test_a_torn_tail_is_ignored_and_the_whole_records_still_land(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="memproxy")
    path, agent_id = await killed_after(tmp_path, 3)
    written = Path(path + ".journal").read_bytes()
    whole = written.rstrip(b"\0")  # the three records, then the zeros written ahead of them
    assert len(written) > len(whole) and read_records(path + ".journal")
    assert "ignored" not in caplog.text  # the zeros are the clean end of the records, nothing to warn about
    with open(path + ".journal", "r+b") as journal:
        journal.seek(len(whole))
        journal.write(whole[: len(whole) // 3 // 2])  # half of a record over the zeros: a write the kill cut short
    assert await messages_after_reopen(path, agent_id) == 6
    assert "after the last whole record ignored" in caplog.text


async def test_syncs_after_the_first_leave_the_file_size_alone(duck: DuckDBStore, tmp_path: Path) -> None:
    """The journal grows by zeros ahead of its records, so most syncs need not write the file's size too."""
    agent = await new_agent(duck)
    journal = str(tmp_path / "memproxy.duckdb.journal")
    sizes, ends = [], []
    for i in range(40):
        await duck.append_turn(turn(agent.id, 1 + 2 * i))  # acknowledged: synced
        sizes.append(os.path.getsize(journal))
        ends.append(len(Path(journal).read_bytes().rstrip(b"\0")))
    ahead = duckdb_journal.TRUNCATE_AT // duckdb_journal.ZERO_AHEAD_SHARE
    assert sizes == [sizes[0]] * 40 and sizes[0] == ends[0] + ahead  # grown once, by the first record's write
    assert ends == sorted(set(ends)) and ends[-1] < sizes[0]  # records follow one another into the zeros
    assert [r.seq for r in read_records(journal)] == list(range(1, 41))


async def test_a_plain_commit_after_journaled_turns_keeps_their_order_across_a_kill(tmp_path: Path) -> None:
    path, agent_id = await killed_after(tmp_path, 2, evict="evict")
    # The eviction's commit took the journaled turns into the tables first, in one transaction.
    assert table_rows(path, "SELECT count(*) FROM messages") == [(4,)]
    db = DuckDBStore(path)
    await db.open()
    try:
        messages = await db.list_messages(agent_id, limit=None)
        assert [m.in_context for m in messages] == [False, True, True, True]
    finally:
        await db.close()


async def test_a_turns_own_eviction_replayed_after_a_kill_reshapes_its_agent(tmp_path: Path) -> None:
    path, agent_id = await killed_after(tmp_path, 3, evict="turn-evict")
    assert table_rows(path, "SELECT count(*) FROM messages") == [(0,)]  # all three only in the journal
    db = DuckDBStore(path)
    await db.open()
    try:
        history = await db.history_since(agent_id, 0)
        assert [m.id for m in history.new][0] == "message-0-1" and len(history.new) == 5
        # A copy read before that turn holds message-0-0 in context: it must not be kept (Store.history_since).
        assert history.reshapes == 1
    finally:
        await db.close()


async def test_a_turn_the_tables_refuse_after_its_ack_is_kept_told_and_not_replayed(tmp_path: Path) -> None:
    path = str(tmp_path / "memproxy.duckdb")
    db = DuckDBStore(path)
    refused: list[str] = []
    db.on_rejected = refused.append
    await db.open()
    agent, other = await new_agent(db), await new_agent(db)
    # Seq 1 is taken by a write that went around the turn path (as a second writer would).
    await db.commit(Changes(messages=[turn(agent.id, 1).messages[0]], insert_only=True))
    clash, fine = turn(agent.id, 1), turn(other.id, 1)
    await db.append_turn(clash)  # acknowledged: the journal has it
    await db.append_turn(fine)
    assert await db.count_messages(other.id) == 2  # the read applies the group; the clash fails alone
    await asyncio.sleep(0.01)
    assert refused == [agent.id]
    assert await db.get_run(clash.runs[0].id) is None
    kept = [orjson.loads(line) for line in Path(path + ".journal-rejected").read_bytes().splitlines()]
    assert [[m[0] for m in k["messages"]] for k in kept] == [[m.id for m in clash.messages]]
    assert "Duplicate key" in kept[0]["error"] or "duplicate key" in kept[0]["error"].lower()
    assert oct(os.stat(path + ".journal-rejected").st_mode & 0o777) == "0o600"
    await db.close()
    db = DuckDBStore(path)
    await db.open()  # passed over for good: not tried (nor kept) a second time
    await db.close()
    assert len(Path(path + ".journal-rejected").read_bytes().splitlines()) == 1


async def test_a_journal_that_cannot_be_written_fails_that_turn_then_turns_go_straight_to_the_tables(
        duck: DuckDBStore) -> None:
    agent = await new_agent(duck)
    journal = duck._journal
    assert journal is not None
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, journal._fd)  # the disk is full from now on
    finally:
        os.close(full)
    lost = turn(agent.id, 1)
    with pytest.raises(StoreUnavailable):
        await duck.append_turn(lost)
    assert journal.broken is not None
    assert await duck.count_messages(agent.id) == 0  # the refused turn is not written either
    kept = turn(agent.id, 1)
    await duck.append_turn(kept)  # a plain commit now
    assert await duck.list_messages(agent.id) == kept.messages


async def test_turns_are_refused_while_too_many_wait_for_the_tables(duck: DuckDBStore,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_connection, "JOURNAL_BACKLOG_MAX", 2)
    monkeypatch.setattr(duckdb_connection, "APPLY_DELAY_S", 3600)  # as if the tables kept failing
    agent = await new_agent(duck)
    await duck.append_turn(turn(agent.id, 1))
    await duck.append_turn(turn(agent.id, 3))
    refused = turn(agent.id, 5)
    with pytest.raises(StoreUnavailable):
        await duck.append_turn(refused)
    assert await duck.count_messages(agent.id) == 4  # the read takes the waiting two to the tables
    await duck.append_turn(refused)  # room again
    assert await duck.count_messages(agent.id) == 6
