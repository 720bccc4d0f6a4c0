"""`memproxy serve --workers N`: who may run it, its processes, and a worker replaced when it dies."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import httpx

from replicas import ROOT, Fleet
from helpers import create_agent, free_port
from test_fleet import ask, history
from test_metrics import scrape, value


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMPROXY_")}
    return subprocess.run([sys.executable, "-m", "proxy", "serve", "--port", str(free_port()), *args],
                          env={**clean, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_workers_without_postgres_and_redis_are_refused_in_one_sentence(tmp_path: Path) -> None:
    out = serve("--workers", "2", "--data-dir", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "MEMPROXY_DATABASE_URL and MEMPROXY_REDIS_URL" in out.stderr and out.stderr.count("\n") == 1
    out = serve(MEMPROXY_WORKERS="3", MEMPROXY_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert out.returncode == 2 and "need MEMPROXY_REDIS_URL" in out.stderr and "DATABASE" not in out.stderr
    out = serve("--workers", "0")
    assert out.returncode == 2 and "MEMPROXY_WORKERS must be 1 or more" in out.stderr
    assert not list(tmp_path.iterdir())  # refused before anything was created


def test_a_replica_without_redis_beside_others_is_refused(make_fleet: Callable[[], Fleet]) -> None:
    fleet = make_fleet()
    with_redis = fleet.replica()
    env = {k: v for k, v in fleet.env.items() if k != "MEMPROXY_REDIS_URL"}
    out = subprocess.run([sys.executable, "-m", "proxy", "serve", "--port", str(free_port())], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "without MEMPROXY_REDIS_URL" not in out.stderr  # (that sentence is for the other order)
    assert "another memproxy process already serves this database" in out.stdout + out.stderr
    assert "MEMPROXY_REDIS_URL" in out.stdout + out.stderr
    assert httpx.get(with_redis.base_url + "/v1/health/", timeout=10).status_code == 200


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return {int(p) for p in listing.read().split()}


def test_two_workers_serve_and_a_dead_worker_is_replaced(make_fleet: Callable[[], Fleet]) -> None:
    fleet = make_fleet()
    server = fleet.replica("--workers", "2")
    assert server.proc is not None
    workers = children(server.proc.pid)
    assert len(workers) == 2
    agent = create_agent(server.base_url)
    for i in range(6):
        assert ask(server.base_url, agent, f"turn-{i}").status_code == 200
    # /metrics answers for both workers, whichever takes the scrape: they share one private directory.
    dirs = {os.path.dirname(f) for pid in workers
            for f in glob.glob(os.path.join(tempfile.gettempdir(), "memproxy-metrics-*", f"*_{pid}.db"))}
    assert len(dirs) == 1, dirs  # both workers write their values into the one directory
    for _ in range(4):
        assert value(scrape(server.base_url), "memproxy_requests_total", route="chat_completions", status="200") >= 6
    os.kill(sorted(workers)[0], signal.SIGKILL)
    while True:  # the supervisor forks a replacement; the other worker serves meanwhile
        now = children(server.proc.pid)
        if len(now) == 2 and now != workers:
            break
        assert server.proc.poll() is None
        time.sleep(0.05)
    assert ask(server.base_url, agent, "after").status_code == 200
    # The dead worker's counts stay in the totals.
    assert value(scrape(server.base_url), "memproxy_requests_total", route="chat_completions", status="200") >= 7
    assert [c for r, c, _ in history(fleet, agent) if r == "user"] == [f"turn-{i}" for i in range(6)] + ["after"]
    server.signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
