"""The sandbox runs tool code in real child processes: limits hold, failures come back as text, nothing leaks."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from tools.sandbox import Sandbox, SandboxLimits, landlock_abi


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = Sandbox(SandboxLimits(timeout=5, memory_mb=256, output=4096))
    yield box
    await box.close()  # the started children waiting for calls


async def test_a_function_runs_with_its_arguments(sandbox: Sandbox) -> None:
    source = "def add(a: int, b: int):\n    return {'sum': a + b}\n"
    result = await sandbox.run(source, "add", {"a": 2, "b": 3}, {})
    assert result.ok and result.text == '{"sum": 5}'


async def test_printed_output_is_the_result_of_a_function_returning_none(sandbox: Sandbox) -> None:
    result = await sandbox.run("def hello():\n    print('hi there')\n", "hello", {}, {})
    assert result.ok and result.text == "hi there\n"


async def test_an_exception_is_reported_with_its_class_and_traceback(sandbox: Sandbox) -> None:
    result = await sandbox.run("def boom():\n    raise ValueError('no such city')\n", "boom", {}, {})
    assert not result.ok and result.text == "ValueError: no such city"
    assert result.traceback is not None and "line 2, in boom" in result.traceback


async def test_an_endless_loop_is_killed_at_the_time_limit() -> None:
    quick = Sandbox(SandboxLimits(timeout=1, memory_mb=256), pool=0)
    result = await quick.run("def spin():\n    while True:\n        pass\n", "spin", {}, {})
    assert not result.ok and "timed out after 1 seconds" in result.text
    # A child that started children of its own: they go too.
    marker = f"{300 + random.random() * 100:.6f}"  # this run's grandchild alone, whatever else is running here
    source = ("def fork_and_wait():\n    import subprocess, time\n"
              f"    subprocess.Popen(['sleep', '{marker}'])\n    time.sleep(300)\n")
    result = await quick.run(source, "fork_and_wait", {}, {})
    assert not result.ok and "timed out" in result.text
    wanted = b"sleep\x00" + marker.encode() + b"\x00"
    # SIGKILL lands asynchronously: give the kernel a moment to finish the grandchild off.
    deadline = time.monotonic() + 10
    while [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline(pid) == wanted]:
        assert time.monotonic() < deadline, "the tool's own child outlived it"
        await asyncio.sleep(0.05)


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


async def test_memory_exhaustion_is_a_tool_error(sandbox: Sandbox) -> None:
    source = "def hog():\n    blocks = [bytearray(64 * 1024 * 1024) for _ in range(64)]\n    return len(blocks)\n"
    result = await sandbox.run(source, "hog", {}, {})
    assert not result.ok and result.text.startswith("MemoryError")


async def test_huge_output_is_truncated_with_a_note(sandbox: Sandbox) -> None:
    printed = await sandbox.run("def loud():\n    print('x' * (100 * 1024 * 1024))\n", "loud", {}, {})
    assert printed.ok and printed.text.startswith("x" * 4096)
    assert printed.text.endswith(f"[output truncated: {100 * 1024 * 1024 + 1 - 4096} more characters]")
    returned = await sandbox.run("def big():\n    return 'y' * 10000\n", "big", {}, {})
    assert returned.ok and len(returned.text) < 4200 and "[output truncated: 5904 more characters]" in returned.text
    # Writing past Python's streams, straight to the file descriptors, reaches nobody.
    raw = await sandbox.run("def raw():\n    import os\n    for _ in range(50):\n"
                            "        os.write(1, b'z' * 1024 * 1024)\n        os.write(2, b'z' * 1024 * 1024)\n"
                            "    return 'done'\n", "raw", {}, {})
    assert raw.ok and raw.text == "done"


async def test_a_crash_without_an_answer_is_reported(sandbox: Sandbox) -> None:
    result = await sandbox.run("def leave():\n    import os\n    os._exit(3)\n", "leave", {}, {})
    assert not result.ok and "exited with status 3" in result.text
    result = await sandbox.run("def die():\n    import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)\n",
                               "die", {}, {})
    assert not result.ok and "SIGSEGV" in result.text


async def test_the_environment_is_only_the_agents_variables_and_path(sandbox: Sandbox) -> None:
    os.environ["MEMPROXY_TEST_SERVER_SECRET"] = "server-only"
    try:
        source = "def env():\n    import os\n    return dict(os.environ)\n"
        result = await sandbox.run(source, "env", {}, {"WEATHER_API_KEY": "sk-weather-123"})
    finally:
        del os.environ["MEMPROXY_TEST_SERVER_SECRET"]
    assert result.ok
    assert set(json.loads(result.text)) == {"WEATHER_API_KEY", "PATH"}
    assert "sk-weather-123" in result.text and "server-only" not in result.text


async def test_each_call_has_a_private_working_directory_removed_afterwards(sandbox: Sandbox, tmp_path: Path) -> None:
    source = "def where():\n    import os\n    open('scratch.txt', 'w').write('x')\n    return os.getcwd()\n"
    first = await sandbox.run(source, "where", {}, {})
    second = await sandbox.run(source, "where", {}, {})
    assert first.ok and second.ok and first.text != second.text
    assert not os.path.exists(first.text) and not os.path.exists(second.text)


needs_landlock = pytest.mark.skipif(landlock_abi() == 0, reason="this kernel has no Landlock")


@needs_landlock
async def test_a_tool_cannot_read_the_data_dir_even_as_root(sandbox: Sandbox, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    secret = data_dir / "memproxy.duckdb"
    secret.write_text("conversations")
    secret.chmod(0o666)  # file permissions are no help (tests run as root): Landlock is what stops it
    source = "def steal(path: str):\n    return open(path).read()\n"
    result = await sandbox.run(source, "steal", {"path": str(secret)}, {})
    assert not result.ok and result.text.startswith("PermissionError"), result.text
    listing = await sandbox.run("def ls(path: str):\n    import os\n    return os.listdir(path)\n", "ls",
                                {"path": str(data_dir)}, {})
    assert not listing.ok and listing.text.startswith("PermissionError"), listing.text
    # Nor through another process's view of the filesystem or environment (the server's keys live there).
    peek = await sandbox.run("def peek(pid: int):\n    return open(f'/proc/{pid}/environ').read()\n", "peek",
                             {"pid": os.getpid()}, {})
    assert not peek.ok and peek.text.startswith("PermissionError"), peek.text
    # The interpreter and the standard library still work.
    imports = await sandbox.run("def imports():\n    import subprocess, urllib.request, decimal\n    return 'ok'\n",
                                "imports", {}, {})
    assert imports.ok and imports.text == "ok", imports.text


@needs_landlock
async def test_a_tool_cannot_signal_the_server(sandbox: Sandbox) -> None:
    source = "def stop(pid: int):\n    import os, signal\n    os.kill(pid, signal.SIGTERM)\n    return 'sent'\n"
    result = await sandbox.run(source, "stop", {"pid": os.getpid()}, {})
    assert not result.ok and result.text.startswith("PermissionError"), result.text
