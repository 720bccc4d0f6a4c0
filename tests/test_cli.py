"""The `memproxy` command: version, the start-up banner, the refusal to serve an open network unguarded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from helpers import free_port
from proxy import __version__
from proxy.config import OPTIONS

MEMPROXY = [sys.executable, "-m", "proxy"]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MEMPROXY, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"memproxy {__version__}"


def test_help_and_readme_list_every_setting() -> None:
    out = run("serve", "--help").stdout
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for opt in OPTIONS:
        assert opt.flag in out and opt.env in out
        assert f"| `{opt.env}` | `{opt.flag}` |" in readme, f"{opt.env} is missing from the README's table"
    assert "--insecure" in out and "--insecure" in readme


def test_refuses_open_bind_without_keys(tmp_path) -> None:
    out = run("serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path))
    assert out.returncode == 2 and "MEMPROXY_API_KEYS" in out.stderr


def test_serve_with_no_configuration_uses_the_simulator_and_says_so(tmp_path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_") and k != "OPENAI_API_KEY"}
    proc = subprocess.Popen([*MEMPROXY, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health/").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        agent = httpx.post(f"http://127.0.0.1:{port}/v1/agents/", json={"name": "cli"}).json()["id"]
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"model": agent, "messages": [{"role": "user", "content": "hello there"}]})
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert "BUILT-IN SIMULATOR" in output and "WARNING" in output
    assert str(tmp_path / ".memproxy") in output  # where data lives
    assert "auth        off" in output
    assert (tmp_path / ".memproxy" / "memproxy.duckdb").exists()


def test_sim_command_serves_alone() -> None:
    port = free_port()
    proc = subprocess.Popen([*MEMPROXY, "sim", "--port", str(port), "--reply-tokens", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        body = None
        while time.monotonic() < deadline:
            try:
                body = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                  json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}).json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert body is not None and body["usage"]["completion_tokens"] == 3
        # On uvloop, as `serve` is: on the default loop a benchmark's upstream cost ~30% more CPU per request.
        assert "uvloop" in Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def test_serve_on_a_fresh_postgres_database_names_the_backend_and_never_prints_the_password(
        postgres_url: str, tmp_path: Path) -> None:
    """`MEMPROXY_DATABASE_URL=postgresql://.../<new db> memproxy serve` (what `make serve` runs) on a database
    created just now: migrated at start, a turn is found by recall search at once, no password in the output."""
    import pg

    admin_url = pg.with_database(postgres_url, "postgres")
    name, fresh = pg.create_database(admin_url)
    try:
        _serve_on_postgres(fresh, tmp_path)
        versions = pg.run_blocking(_fetch_column(fresh, "SELECT version FROM schema_migrations ORDER BY 1"))
        from memory.postgres_migrations import MIGRATIONS

        assert versions == [version for version, _ in MIGRATIONS]
    finally:
        pg.drop_database(admin_url, name)


async def _fetch_column(url: str, sql: str) -> list[object]:
    import asyncpg

    con = await asyncpg.connect(url)
    try:
        return [row[0] for row in await con.fetch(sql)]
    finally:
        await con.close()


def _serve_on_postgres(database_url: str, tmp_path: Path) -> None:
    # The local server trusts every connection, so any password is accepted: a real one to look for.
    url = database_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")
    assert "s3cret-pw" in url
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_") and k != "OPENAI_API_KEY"}
    env["MEMPROXY_DATABASE_URL"] = url
    proc = subprocess.Popen([*MEMPROXY, "serve", "--port", str(port), "--log-level", "debug",
                             "--embedding-model", "sim-embed"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        health: dict[str, object] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not health:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health/").json()
            except httpx.HTTPError:
                time.sleep(0.1)
        agent = httpx.post(f"http://127.0.0.1:{port}/v1/agents/", json={"name": "pg"}).json()["id"]
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"model": agent, "messages": [{"role": "user", "content": "hello there"}]})
        assert reply.status_code == 200
        # Right away, no flush: the recall row was written in the turn's own transaction.
        hits = httpx.post(f"http://127.0.0.1:{port}/v1/agents/messages/search",
                          json={"agent_id": agent, "query": "hello", "search_mode": "fts"}).json()
        assert "hello there" in [h["embedded_text"] for h in hits]
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert health["backend"] == "postgresql"
    # The local server has no pgvector: full-text only, said in /v1/health/ and once in the log.
    assert health["search"] == "full-text" and "pgvector" in str(health["search_note"])
    assert output.count("no pgvector extension") == 1
    assert "backend     postgresql postgresql://postgres:***@127.0.0.1:5432/" in output
    assert "s3cret" not in output
    assert not (tmp_path / ".memproxy").exists()  # nothing written to a data dir


def _start(port: int, data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*MEMPROXY, "serve", "--port", str(port), "--data-dir", str(data_dir), *extra],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health/").status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("memproxy did not start")


def test_a_taken_port_or_data_dir_is_one_plain_sentence(tmp_path) -> None:
    port = free_port()
    first = _start(port, tmp_path / "a")
    try:
        taken = run("serve", "--port", str(port), "--data-dir", str(tmp_path / "b"))
        assert taken.returncode == 1 and "Traceback" not in taken.stderr
        assert taken.stderr.strip().splitlines() == [taken.stderr.strip()]
        assert f"port {port} on 127.0.0.1 is already in use by python" in taken.stderr
        assert f"(pid {first.pid})" in taken.stderr
        held = run("serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "a"))
        assert held.returncode == 1 and "Traceback" not in held.stderr
        assert held.stderr.strip() == (f"memproxy: the data dir {tmp_path / 'a'} is already in use by memproxy "
                                       f"process {first.pid}; stop it or choose another with --data-dir")
        assert "listening" not in held.stdout + taken.stdout  # no banner before the refusal
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


def test_json_logs_are_one_object_per_line_with_ids_and_no_content(tmp_path) -> None:
    import json

    port = free_port()
    proc = _start(port, tmp_path / "d", env={"MEMPROXY_LOG_FORMAT": "json", "MEMPROXY_LOG_LEVEL": "debug"})
    try:
        base = f"http://127.0.0.1:{port}"
        agent = httpx.post(base + "/v1/agents/", json={"name": "logs"}).json()["id"]
        reply = httpx.post(base + "/v1/chat/completions", headers={"X-Request-Id": "req-trace-1"},
                           json={"model": agent, "messages": [{"role": "user", "content": "PRIVATE-WORDS-42"}],
                                 "metadata": {"crm": "PRIVATE-META"}})
        assert reply.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    not_json = [line for line in err.splitlines() if line.strip() and not line.startswith("{")]
    assert not not_json, not_json[:5]
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    [turn] = [line for line in lines if line["message"].startswith("turn finished")]
    assert turn["request_id"] == "req-trace-1" and turn["agent_id"] == agent and turn["run_id"].startswith("run-")
    assert turn["timings"]["total_ms"] > 0
    assert "PRIVATE-WORDS-42" not in err and "PRIVATE-META" not in err
