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
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def test_serve_on_postgres_names_the_backend_and_never_prints_the_password(postgres_schema_url: str,
                                                                            tmp_path: Path) -> None:
    # The local server trusts every connection, so any password is accepted: a real one to look for.
    url = postgres_schema_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-pw@")
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
