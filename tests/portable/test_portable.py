"""`memproxy export` / `memproxy import`: the real CLI in a subprocess, a real DuckDB + LanceDB data dir, a real
PostgreSQL schema. Counts, record-for-record equality, search results, re-runs and damaged files."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory.backends import LANCE_DIR
from memory.duckdb_store import open_store
from memory.longterm import Embedder, LanceLongTermMemory, LongTermMemory
from memory.mcp_servers import McpServer
from memory.models import Agent, new_id
from memory.postgres_longterm import PostgresLongTermMemory
from memory.postgres_store import PostgresStore
from memory.recall import reconcile
from memory.secretbox import SecretBox, load_key
from memory.store import PORTABLE_KINDS, Store
from portable_data import populate
from proxy.preflight import claim_data_dir
from proxy.sim.embed import embed_text

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """`memproxy ARGS` in a subprocess running this checkout's code, with no MEMPROXY_* from the caller."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_")}
    clean["PYTHONPATH"] = str(ROOT)
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "proxy", *args], input=stdin, capture_output=True, env=clean,
                          cwd=ROOT, timeout=300)


def cli_here(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`memproxy ARGS` in this process (no interpreter start-up); (exit code, stderr)."""
    from proxy.cli import main

    code = main(list(args))
    return code, capsys.readouterr().err


async def cli_async(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`cli_here` from an async test: the command runs its own event loop, so on a thread."""
    return await asyncio.to_thread(cli_here, capsys, *args)


def records(path: Path) -> list[str]:
    """Every record line but the header (which carries the export time), sorted."""
    with gzip.open(path, "rt") as handle:
        return sorted(handle.read().splitlines()[1:])


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, int], Path]:
    """A populated data dir, its counts, and its export (made once: the dir is only read afterwards)."""
    data_dir = str(tmp_path_factory.mktemp("source"))
    counts = asyncio.run(populate(data_dir))
    exported = tmp_path_factory.mktemp("files") / "export.jsonl.gz"
    done = cli("export", str(exported), "--data-dir", data_dir)
    assert done.returncode == 0, done.stderr.decode()
    assert b"\r" not in done.stderr  # no progress bar when stderr is not a terminal
    return data_dir, counts, exported


class Opened:
    def __init__(self, store: Store, longterm: LongTermMemory) -> None:
        self.store, self.longterm = store, longterm

    async def counts(self) -> dict[str, int]:
        out = {}
        for table in PORTABLE_KINDS:
            out[table], after = 0, None
            while page := await self.store.scan(table, after=after, limit=200):
                out[table] += len(page)
                after = page[-1].id
        out["passages"], after = 0, None
        while passages := await self.longterm.export_passages(after=after, limit=200):
            out["passages"] += len(passages)
            after = passages[-1][0].id
        return out


async def _opened(store: Store, longterm: LongTermMemory) -> AsyncIterator[Opened]:
    await store.open()
    await longterm.open()
    yield Opened(store, longterm)
    await longterm.close()
    await store.close()


def embedded(data_dir: str) -> AsyncIterator[Opened]:
    return _opened(open_store(data_dir), LanceLongTermMemory(os.path.join(data_dir, LANCE_DIR)))


def postgres(url: str) -> AsyncIterator[Opened]:
    return _opened(PostgresStore(url), PostgresLongTermMemory(url))


async def same_search_results(a: Opened, b: Opened, mode: str = "fts") -> int:
    """Search both backends with the same queries; returns how many queries were compared.

    Each query is a record's own word (msgword<n>, pword<p>) plus a second word of that record, so the right
    top hit is the same whatever the ranking function (BM25 in LanceDB, ts_rank in PostgreSQL).
    """
    compared = 0
    agents = await a.store.scan("agents")
    for n in range(0, 300, 37):  # every message carries a word of its own, in one agent
        found = []
        for agent in agents:
            hits = await a.longterm.search_recall(agent.id, f"msgword{n}", mode=mode, limit=5)
            other = await b.longterm.search_recall(agent.id, f"msgword{n}", mode=mode, limit=5)
            assert [h.record for h in hits] == [h.record for h in other]
            found += [(agent.id, h.record.text) for h in hits]
        [(owner, text)] = found
        query = " ".join(text.split()[:2])
        hits = await a.longterm.search_recall(owner, query, mode=mode, limit=5)
        other = await b.longterm.search_recall(owner, query, mode=mode, limit=5)
        assert hits[0].record.text == text and other[0].record.id == hits[0].record.id
        compared += 1
    for p in range(0, 100, 9):  # and every passage, pword<p>
        found = []
        for agent in agents:
            hits = await a.longterm.search_passages(agent.id, f"pword{p}", mode=mode, top_k=5)
            other = await b.longterm.search_passages(agent.id, f"pword{p}", mode=mode, top_k=5)
            assert [h.record for h in hits] == [h.record for h in other]
            found += [(agent.id, h.record.text) for h in hits]
        [(owner, text)] = found
        query = " ".join(text.split()[:3])
        hits = await a.longterm.search_passages(owner, query, mode=mode, top_k=5)
        other = await b.longterm.search_passages(owner, query, mode=mode, top_k=5)
        assert hits[0].record.text == text and other[0].record.id == hits[0].record.id
        compared += 1
    return compared


async def test_a_data_dir_moves_to_postgres_with_every_record_and_the_same_search_results(
        source: tuple[str, dict[str, int], Path], postgres_schema_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, counts, exported = source
    done = cli("import", str(exported), "--database-url", postgres_schema_url)
    assert done.returncode == 0, done.stderr.decode()
    table = done.stderr.decode()
    assert "message          300       300         0       300" in table
    assert "passage          100       100         0       100" in table
    assert "mcp_server         1         1         0         1" in table
    async for src in embedded(data_dir):
        async for dst in postgres(postgres_schema_url):
            assert await src.counts() == await dst.counts() == {
                "tools": 1, "blocks": counts["block"], "agents": 3, "runs": counts["run"], "messages": 300,
                "passages": 100}
            for agent in await src.store.scan("agents"):
                assert await dst.store.get_agent(agent.id) == agent  # blocks in order, tool env, timezone
                assert await dst.store.list_messages(agent.id, limit=None) == \
                    await src.store.list_messages(agent.id, limit=None)
                assert await dst.store.list_messages(agent.id, in_context_only=True, limit=None) == \
                    await src.store.list_messages(agent.id, in_context_only=True, limit=None)
            # MCP servers move with their connection, credentials and registered tools.
            assert await dst.store.list_mcp_servers() == await src.store.list_mcp_servers() != []
            assert await same_search_results(src, dst) == 9 + 12
            # The recall index was built by the import: nothing is left for a server's start-up to repair.
            assert (await reconcile(dst.store, dst.longterm, frozenset())).fixed == 0

    # Twice: nothing changes, every record is reported as already there, and the counts still verify.
    code, err = await cli_async(capsys, "import", str(exported), "--database-url", postgres_schema_url)
    assert code == 0, err
    assert "message          300         0       300       300" in err
    back = tmp_path / "back.jsonl.gz"
    assert (await cli_async(capsys, "export", str(back), "--database-url", postgres_schema_url))[0] == 0
    assert records(back) == records(exported)  # record for record, byte for byte


def test_export_to_stdout_and_import_from_stdin_round_trip_into_a_fresh_data_dir(
        source: tuple[str, dict[str, int], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, _, exported = source
    piped = cli("export", "-", "--data-dir", data_dir)
    assert piped.returncode == 0 and piped.stdout[:2] == b"\x1f\x8b"  # gzip on stdout, the report on stderr
    fresh = str(tmp_path / "fresh")
    done = cli("import", "-", "--data-dir", fresh, stdin=piped.stdout)
    assert done.returncode == 0, done.stderr.decode()
    back = tmp_path / "back.jsonl.gz"
    assert cli_here(capsys, "export", str(back), "--data-dir", fresh)[0] == 0
    assert records(back) == records(exported)

    async def search_both() -> int:
        async for src in embedded(data_dir):
            async for dst in embedded(fresh):
                return await same_search_results(src, dst)
        return 0

    assert asyncio.run(search_both()) == 9 + 12


def _truncated(exported: Path, tmp_path: Path) -> Path:
    """The export cut off in its 150th message: compressed data that stops without gzip's end, mid-record."""
    lines = gzip.decompress(exported.read_bytes()).splitlines(keepends=True)
    messages = [i for i, line in enumerate(lines) if line.startswith(b'{"kind":"message"')]
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb") as gz:
        gz.write(b"".join(lines[: messages[150]]) + lines[messages[150]][:40])
        gz.flush()
        cut = raw.getvalue()
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(cut)
    return path


async def test_a_truncated_file_stops_with_a_clear_error_and_a_rerun_with_the_whole_file_completes(
        source: tuple[str, dict[str, int], Path], postgres_schema_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, _, exported = source
    code, err = await cli_async(capsys, "import", str(_truncated(exported, tmp_path)), "--database-url",
                                postgres_schema_url)
    assert code == 1
    assert "truncated or corrupt" in err and "Traceback" not in err
    async for dst in postgres(postgres_schema_url):
        partial = await dst.counts()
        assert partial["messages"] == 150 and partial["passages"] == 0  # every whole record before the cut
        # Consistent: every message's agent and run exist, and the recall index holds exactly the messages.
        after = None
        while page := await dst.store.scan("messages", after=after, limit=500):
            assert await dst.store.existing_ids("agents", [m.agent_id for m in page]) == {m.agent_id for m in page}
            assert await dst.store.existing_ids("runs", [m.run_id for m in page]) == {m.run_id for m in page}
            after = page[-1].id
        assert (await reconcile(dst.store, dst.longterm, frozenset())).fixed == 0
    code, err = await cli_async(capsys, "import", str(exported), "--database-url", postgres_schema_url)
    assert code == 0, err
    async for dst in postgres(postgres_schema_url):
        assert (await dst.counts())["messages"] == 300 and (await dst.counts())["passages"] == 100


@pytest.mark.parametrize("damage, message", [
    (lambda data: b"not gzip at all", "not a gzip file"),
    (lambda data: data[:20] + bytes(b ^ 0x5A for b in data[20:60]) + data[60:], "corrupt"),
    (lambda data: gzip.compress(gzip.decompress(data).replace(b'"kind":"run"', b'"kind":"run', 1)), "not JSON"),
    (lambda data: gzip.compress(gzip.decompress(data).rsplit(b"\n", 2)[0] + b"\n"), "ends without its end record"),
    (lambda data: gzip.compress(b'{"format":"memproxy-export","version":99}\n'), "newer than this memproxy reads"),
    (lambda data: gzip.compress(gzip.decompress(data).replace(b'"seq":', b'"sequence":', 1)), "has no field"),
])
def test_a_damaged_or_newer_file_is_refused_with_a_clear_message(
        source: tuple[str, dict[str, int], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        damage: Any, message: str) -> None:
    _, _, exported = source
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(damage(exported.read_bytes()))
    target = str(tmp_path / "target")
    code, err = cli_here(capsys, "import", str(bad), "--data-dir", target)
    assert code == 1
    assert message in err and "Traceback" not in err, err
    if "newer" in message or "gzip" in message:  # refused before the backend is opened: nothing was made
        assert not os.path.exists(os.path.join(target, "memproxy.duckdb"))


def test_export_and_import_refuse_a_data_dir_a_server_holds(source: tuple[str, dict[str, int], Path],
                                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir, _, exported = source
    held = claim_data_dir(data_dir)  # what a running `memproxy serve` holds for its whole life (a lock per open file)
    try:
        for args in (("export", str(tmp_path / "x.gz")), ("import", str(exported))):
            code, err = cli_here(capsys, *args, "--data-dir", data_dir)
            assert code == 1
            assert "is already in use by memproxy process" in err
        assert not (tmp_path / "x.gz").exists()
    finally:
        held.close()


def test_a_file_that_disagrees_with_its_end_counts_fails_the_verification(
        source: tuple[str, dict[str, int], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, counts, exported = source
    lines = gzip.decompress(exported.read_bytes()).splitlines()
    end = json.loads(lines[-1])
    end["counts"]["passage"] += 1  # the file announces one passage more than it holds
    bad = tmp_path / "miscounted.jsonl.gz"
    bad.write_bytes(gzip.compress(b"\n".join(lines[:-1] + [json.dumps(end).encode()]) + b"\n"))
    code, err = cli_here(capsys, "import", str(bad), "--data-dir", str(tmp_path / "target"), "--quiet")
    assert code == 1
    assert "count mismatch: passage: the file announces 101 but holds 100" in err


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    import io

    from memory.portable.progress import Progress

    out = io.StringIO()
    bar = Progress("importing", total=200, stream=out)
    bar.update(10, 50, force=True)
    bar.finish(40, 200)
    assert out.getvalue() == ("\rimporting [#######                       ]  25%  10 records"
                              "\rimporting [##############################] 100%  40 records\n")
    quiet = io.StringIO()
    Progress("importing", total=200, stream=quiet, enabled=False).finish(40, 200)
    assert quiet.getvalue() == ""


class WordEmbedder(Embedder):
    """The simulator's deterministic embedding (hashed words and trigrams), in process: texts sharing words are close."""

    dim = 32

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [embed_text(text, self.dim) for text in texts]


def test_passage_vectors_move_with_them_and_vector_search_ranks_the_same(
        tmp_path: Path, pgvector_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    import pg

    data_dir = str(tmp_path / "vectors")
    asyncio.run(populate(data_dir, agents=2, messages=20, passages=60, embedder=WordEmbedder()))
    exported = tmp_path / "vectors.jsonl.gz"
    assert cli_here(capsys, "export", str(exported), "--data-dir", data_dir)[0] == 0
    schema, url = pg.run_blocking(pg.create_schema(pgvector_url))
    try:
        code, err = cli_here(capsys, "import", str(exported), "--database-url", url)
        assert code == 0, err

        async def compare() -> None:
            src = LanceLongTermMemory(os.path.join(data_dir, LANCE_DIR), WordEmbedder())
            dst = PostgresLongTermMemory(url, WordEmbedder())
            await src.open()
            await dst.open()
            try:
                assert dst.vector_search
                mine, theirs = await src.export_passages(limit=100), await dst.export_passages(limit=100)
                assert len(mine) == len(theirs) == 60
                for (p, v), (q, w) in zip(mine, theirs):
                    assert p == q and v is not None and w is not None
                    assert max(abs(a - b) for a, b in zip(v, w)) < 1e-6  # float32 both sides
                agent_ids = sorted({p.agent_id for p, _ in mine})
                for query in ("lighthouse glacier", "saffron orchard comet", "violin meadow", "tundra"):
                    for agent_id in agent_ids:
                        a = await src.search_passages(agent_id, query, mode="vector", top_k=5)
                        b = await dst.search_passages(agent_id, query, mode="vector", top_k=5)
                        assert [h.record.id for h in a] == [h.record.id for h in b] and len(a) == 5
                        assert {h.search_mode for h in a + b} == {"vector"}
            finally:
                await src.close()
                await dst.close()

        asyncio.run(compare())
    finally:
        pg.run_blocking(pg.drop_schema(pgvector_url, schema))


def test_an_unreachable_database_is_one_clear_line(source: tuple[str, dict[str, int], Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _, _, exported = source
    code, err = cli_here(capsys, "import", str(exported), "--database-url",
                         "postgresql://memproxy:hunter2@127.0.0.1:9/nowhere")
    assert code == 1 and "Traceback" not in err and "hunter2" not in err
    assert err.strip().splitlines()[-1].startswith("memproxy: ")


def test_on_a_terminal_import_draws_a_progress_bar(source: tuple[str, dict[str, int], Path], tmp_path: Path) -> None:
    import pty

    _, _, exported = source
    master, slave = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_")} | {"PYTHONPATH": str(ROOT)}
    with subprocess.Popen([sys.executable, "-m", "proxy", "import", str(exported), "--data-dir", str(tmp_path / "t")],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=clean,
                          cwd=ROOT) as child:
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            out += chunk
        assert child.wait(timeout=120) == 0
    os.close(master)
    text = out.decode(errors="replace")
    assert "\rimporting [" in text and "100%" in text and "records" in text, text


def test_a_target_holding_different_data_under_a_name_stops_the_import_cleanly(
        source: tuple[str, dict[str, int], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from memory.models import Tool, new_id

    _, _, exported = source
    target = str(tmp_path / "target")

    async def clash() -> None:  # another tool already named `roll_dice` in the target
        store = open_store(target)
        await store.open()
        await store.create_tool(Tool(id=new_id("tool"), name="roll_dice", source_code="def roll_dice():\n    pass\n",
                                     json_schema={"name": "roll_dice"}))
        await store.close()

    asyncio.run(clash())
    code, err = cli_here(capsys, "import", str(exported), "--data-dir", target)
    assert code == 1 and "Traceback" not in err
    assert "import stopped: tool: the target refused a record" in err and "fix and re-run" in err

    async def after() -> dict[str, int]:
        async for dst in embedded(target):
            return await dst.counts()
        return {}

    assert asyncio.run(after()) == {"tools": 1, "blocks": 0, "agents": 0, "runs": 0, "messages": 0, "passages": 0}


async def _sealed(data_dir: str, secret_key: str | None = None) -> tuple[Agent, McpServer]:
    """A data dir as a server leaves it: an agent's tool variables and an MCP server's token encrypted."""
    store = open_store(data_dir)
    store.secret_box = SecretBox(load_key(data_dir, secret_key))
    await store.open()
    try:
        agent = Agent(id=new_id("agent"), name="sealed", system="You are a test agent.",
                      tool_env={"API_TOKEN": "tok-sealed-1234"})
        await store.create_agent(agent, [])
        server = McpServer(id=new_id("mcp_server"), server_name="sealed-mcp", type="sse",
                           server_url="https://mcp.example.test/sse", auth_token="Bearer sealed-5678")
        await store.create_mcp_server(server)
        return await store.get_agent(agent.id), server
    finally:
        await store.close()


def _raw(data_dir: str, sql: str) -> list[Any]:
    import duckdb

    con = duckdb.connect(os.path.join(data_dir, "memproxy.duckdb"), read_only=True)
    try:
        return [row[0] for row in con.execute(sql).fetchall()]
    finally:
        con.close()


def test_encrypted_tool_variables_and_mcp_credentials_move_and_are_sealed_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = str(tmp_path / "source"), str(tmp_path / "target")
    agent, server = asyncio.run(_sealed(source))
    assert all(v.startswith("fernet:") for v in _raw(source, "SELECT tool_env FROM agents"))
    exported = tmp_path / "sealed.jsonl.gz"
    code, err = cli_here(capsys, "export", str(exported), "--data-dir", source)
    assert code == 0, err
    assert b"tok-sealed-1234" in gzip.decompress(exported.read_bytes())  # the file holds them in the clear (0600)
    code, err = cli_here(capsys, "import", str(exported), "--data-dir", target)
    assert code == 0, err
    # The target (its own key file) stores them encrypted again, and reads them back whole.
    assert all(v.startswith("fernet:") for v in _raw(target, "SELECT tool_env FROM agents"))
    assert all(v.startswith("fernet:") for v in _raw(target, "SELECT config FROM mcp_servers"))

    async def read_back() -> tuple[Agent, list[McpServer]]:
        store = open_store(target)
        store.secret_box = SecretBox(load_key(target, None))
        await store.open()
        try:
            return await store.get_agent(agent.id), await store.list_mcp_servers()
        finally:
            await store.close()

    moved, servers = asyncio.run(read_back())
    assert moved.tool_env == {"API_TOKEN": "tok-sealed-1234"} and servers == [server]

    # A data dir sealed under another key than the one configured: one clear line, no traceback.
    code, err = cli_here(capsys, "export", str(tmp_path / "no.jsonl.gz"), "--data-dir", source,
                         "--secret-key", "not-the-key")
    assert code == 1 and "cannot be decrypted" in err and "Traceback" not in err, err
