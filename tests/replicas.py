"""memproxy replicas as real processes on loopback ports, sharing one PostgreSQL schema and one Redis prefix.

Importable as `replicas` (the scale-out suite, and the `server` fixture under MEMPROXY_TEST_WORKERS).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from helpers import free_port

ROOT = Path(__file__).resolve().parents[1]


class Replica:
    """`python -m proxy serve` in its own session (so a kill reaches its workers too), with its log in a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = log
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        return self.launch().wait_ready()

    def launch(self) -> Replica:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(self.port), *self.args],
                                         env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self) -> Replica:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            try:
                if httpx.get(self.base_url + "/v1/health/", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"replica did not start:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGCONT)  # a test may have paused it
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


class Fleet:
    """Replicas over one schema and one Redis key prefix; everything is removed at the end."""

    def __init__(self, database_url: str, redis_url: str, sim_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.prefix = f"memproxy-test-{secrets.token_hex(4)}:"
        self.log_dir = log_dir
        self.replicas: list[Replica] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "MEMPROXY_DATABASE_URL": database_url,
                    "MEMPROXY_REDIS_URL": redis_url, "MEMPROXY_REDIS_PREFIX": self.prefix,
                    "MEMPROXY_UPSTREAM_URL": sim_url, "MEMPROXY_LOCK_TTL": "2", "MEMPROXY_LOG_LEVEL": "warning",
                    "MEMPROXY_DATA_DIR": str(log_dir / "data")}
        for name in ("MEMPROXY_WORKERS", "MEMPROXY_API_KEYS", "MEMPROXY_EMBEDDING_MODEL"):
            self.env.pop(name, None)

    def replica(self, *args: str, **env: str) -> Replica:
        return self.start(1, *args, **env)[0]

    def start(self, count: int, *args: str, **env: str) -> list[Replica]:
        """`count` more replicas, started side by side."""
        made = []
        for _ in range(count):
            log = self.log_dir / f"replica-{len(self.replicas)}.log"
            made.append(Replica({**self.env, **env}, log, *args).launch())
            self.replicas.append(made[-1])
        return [replica.wait_ready() for replica in made]

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def redis_keys(self) -> list[bytes]:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            return list(client.scan_iter(match=self.prefix + "*", count=1000))
        finally:
            client.close()

    def redis_running_run(self, agent_id: str) -> str:
        """The id of the run in flight for the agent, from the Redis record its lease keeps."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            for key in client.scan_iter(match=self.prefix + "run:*", count=1000):
                raw = client.get(key)
                if raw is not None and agent_id.encode() in raw:
                    return key.decode().rsplit(":", 1)[1]
        finally:
            client.close()
        raise AssertionError(f"no run in flight for {agent_id}")

    def drop_keys(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1)
        try:
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        except redis.ConnectionError:
            pass  # a Redis of the test's own, already stopped: its keys went with it
        finally:
            client.close()

    def query(self, sql: str, *args: Any) -> list[Any]:
        import asyncpg
        import pg

        async def run() -> list[Any]:
            con = await asyncpg.connect(self.database_url)
            try:
                return list(await con.fetch(sql, *args))
            finally:
                await con.close()

        return pg.run_blocking(run())
