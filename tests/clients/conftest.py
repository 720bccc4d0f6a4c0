"""Fixtures of the real-client tests: the Node project, installed from its own lockfile, and a node runner."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
STAMP = NODE_DIR / "node_modules" / ".memproxy-install-stamp"
MIN_NODE_MAJOR = 20
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> None:
    """A client that cannot run here: a failure under CI=true, a skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


class NodeRunner:
    """Runs one of the project's .mjs scripts with a JSON payload on stdin; returns its JSON result."""

    def __init__(self, node: str) -> None:
        self.node = node

    def run(self, script: str, payload: dict[str, Any], timeout: float = 30) -> Any:
        proc = subprocess.run([self.node, str(NODE_DIR / script)], input=json.dumps(payload), cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "NODE_NO_WARNINGS": "1"})
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        try:
            out = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            pytest.fail(f"{script} printed no result (exit {proc.returncode})\nstdout:\n{proc.stdout[-4000:]}\n"
                        f"stderr:\n{proc.stderr[-4000:]}", pytrace=False)
        if not out.get("ok"):
            pytest.fail(f"{script} failed inside the client: {json.dumps(out.get('error'), indent=2)[:6000]}\n"
                        f"stderr:\n{proc.stderr[-3000:]}", pytrace=False)
        return out["result"]


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NODE_DIR / name).read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="session")
def node() -> NodeRunner:
    """`node` with tests/clients/node/node_modules installed by `npm ci` (once; again when the lockfile changes)."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm_bin is None:
        unavailable("node and npm are needed for the Node client tests but are not on PATH")
    version = subprocess.run([node_bin, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_NODE_MAJOR:
        unavailable(f"the Node client tests need node >= {MIN_NODE_MAJOR}, found {version or 'nothing'}")
    digest = _lock_digest()
    with open(NODE_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions (xdist, two checkouts' runs) install once
        if not (STAMP.exists() and STAMP.read_text() == digest):
            try:
                proc = subprocess.run([npm_bin, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                                      capture_output=True, text=True, timeout=600)
            except subprocess.TimeoutExpired:
                unavailable("`npm ci` in tests/clients/node did not finish within 600 s")
            if proc.returncode != 0:
                unavailable(f"`npm ci` in tests/clients/node failed (exit {proc.returncode}): "
                            f"{(proc.stderr or proc.stdout)[-2000:]}")
            STAMP.write_text(digest)
    return NodeRunner(node_bin)


@pytest.fixture
def resumable_server(request: pytest.FixtureRequest, make_server: Any, redis_url: str) -> Any:
    """A server with Redis-backed resumable runs (what `GET/POST /v1/runs/{id}/stream` need).

    Skipped without Redis, a failure under CI=true (the `redis_url` fixture). Under MEMPROXY_TEST_WORKERS the
    module's server is a fleet on Redis already."""
    import uuid

    import redis

    if int(os.environ.get("MEMPROXY_TEST_WORKERS") or 1) > 1:
        yield request.getfixturevalue("server")
        return
    prefix = f"mpt:{uuid.uuid4().hex[:12]}:"
    yield make_server(redis_url=redis_url, redis_prefix=prefix, keepalive_interval=0.2)
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="session")
def mcp_url() -> Any:
    """The real MCP test server (tests/tools/mcp_server.py) over streamable HTTP, for the whole session."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # tests/tools/mcp_support.py
    from mcp_support import start_mcp

    proc = start_mcp("streamable-http")
    yield proc.url
    proc.stop()
