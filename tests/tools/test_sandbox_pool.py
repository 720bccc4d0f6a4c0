"""The sandbox's started children: one call each, nothing carried between calls, all gone at close."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from tools.sandbox import WORKDIR_PREFIX, Sandbox, SandboxLimits, sweep_orphans

REPORT = ("def report():\n    import os\n"
          "    return {'pid': os.getpid(), 'env': dict(os.environ), 'cwd': os.getcwd(), 'files': os.listdir('.')}\n")
LEAVE = "def leave(note: str):\n    import os\n    open('left.txt', 'w').write(note)\n    os.environ['LEFT'] = note\n"


async def spares(sandbox: Sandbox, count: int) -> None:
    while len(sandbox._spare) < count:  # started in the background after each call
        await asyncio.sleep(0.02)


def environ_of(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as raw:
        return raw.read()


async def test_each_call_gets_its_own_started_process_and_nothing_carries_over() -> None:
    sandbox = Sandbox(SandboxLimits(timeout=10, memory_mb=256), pool=2)
    try:
        first = await sandbox.run(LEAVE, "leave", {"note": "secret-of-call-1"}, {"TOKEN": "one"})
        assert first.ok
        await spares(sandbox, 2)
        waiting = [child.proc.pid for child in sandbox._spare]
        # A waiting child has nothing of any tool: PATH alone, and an empty working directory.
        for pid in waiting:
            assert environ_of(pid).split(b"\0")[0].startswith(b"PATH=") and b"TOKEN" not in environ_of(pid)
        second = await sandbox.run(REPORT, "report", {}, {"TOKEN": "two"})
        assert second.ok, second.text
        import json

        seen = json.loads(second.text)
        assert seen["pid"] in waiting  # served by a process started before the call
        assert seen["env"] == {"TOKEN": "two", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        assert seen["files"] == []  # the first call's file is not there
        assert not os.path.exists(seen["cwd"])  # its working directory went with it
    finally:
        await sandbox.close()


async def test_close_stops_the_waiting_children_and_removes_their_directories() -> None:
    sandbox = Sandbox(SandboxLimits(timeout=10, memory_mb=256), pool=3)
    assert (await sandbox.run(REPORT, "report", {}, {})).ok
    await spares(sandbox, 3)
    children = list(sandbox._spare)
    await sandbox.close()
    for child in children:
        assert child.proc.returncode is not None
        assert not os.path.exists(child.workdir)
    assert sandbox._spare == []


async def test_without_a_pool_each_call_starts_its_own_child() -> None:
    sandbox = Sandbox(SandboxLimits(timeout=10, memory_mb=256), pool=0)
    try:
        result = await sandbox.run("def two():\n    return 2\n", "two", {}, {})
        assert result.ok and result.text == "2"
        await asyncio.sleep(0.1)
        assert sandbox._spare == [] and sandbox._starting == 0
    finally:
        await sandbox.close()


async def test_a_waiting_child_that_died_is_replaced_by_a_fresh_one() -> None:
    sandbox = Sandbox(SandboxLimits(timeout=10, memory_mb=256), pool=1)
    try:
        assert (await sandbox.run(REPORT, "report", {}, {})).ok
        await spares(sandbox, 1)
        dead = sandbox._spare[0]
        dead.proc.kill()
        await dead.proc.wait()
        result = await sandbox.run("def three():\n    return 3\n", "three", {}, {})
        assert result.ok and result.text == "3"
        assert not os.path.exists(dead.workdir)
    finally:
        await sandbox.close()


KILLED_SERVER = """
import asyncio, sys
from tools.sandbox import Sandbox, SandboxLimits

async def main():
    sandbox = Sandbox(SandboxLimits(timeout=10, memory_mb=256), pool=2)
    sandbox._refill()
    while len(sandbox._spare) < 2:
        await asyncio.sleep(0.02)
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_killed_servers_working_dirs_are_removed_by_the_next_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(root)}
    server = await asyncio.create_subprocess_exec(sys.executable, "-c", KILLED_SERVER, env=env, cwd=root,
                                                  stdout=asyncio.subprocess.PIPE)
    assert server.stdout is not None
    assert await asyncio.wait_for(server.stdout.readline(), 30) == b"ready\n"
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and all(name.startswith(f"{WORKDIR_PREFIX}{server.pid}-") for name in left)
    server.send_signal(signal.SIGKILL)  # no cleanup runs: the two waiting children's dirs stay behind
    await server.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == left
    ours = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-live"  # a running server's dir is never touched
    ours.mkdir()
    other = tmp_path / "memproxy-tool-notapid"
    other.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sandbox = Sandbox(SandboxLimits(timeout=10, memory_mb=256), pool=0)  # sweeps when it starts
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ours.name, other.name])
        assert sweep_orphans(str(tmp_path)) == 0
    finally:
        await sandbox.close()
