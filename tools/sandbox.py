"""Run custom tool code outside the server: one fresh, limited subprocess per call.

A fresh `python -I` per call (about 20-40 ms of start-up on this machine) instead of a warm pool:
every call then gets its own environment, working directory and limits, and nothing a tool leaves
behind (threads, globals, monkey-patches) can reach the next call. See README "Tools" for what
this does and does not protect against.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass

import orjson

log = logging.getLogger("memproxy")

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
OUTPUT_LIMIT = 1024 * 1024  # characters of result the model may get; more is truncated with a note
# What a tool may read (and execute): the interpreter, system libraries and configuration. Nothing else:
# not the data dir, not /home, not /proc (another process's environment holds the server's keys).
SYSTEM_TREES = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")


@dataclass(frozen=True)
class SandboxLimits:
    timeout: float = 30.0  # wall-clock seconds per call
    memory_mb: int = 512  # address space of the child
    output: int = OUTPUT_LIMIT


@dataclass(frozen=True)
class SandboxResult:
    ok: bool
    text: str  # the tool's result, or the error the model reads
    traceback: str | None = None  # the tool's own traceback, for the log only


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when it has none (then tools are not confined to paths)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        return max(0, int(libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))))
    except (OSError, AttributeError):
        return 0


def readable_trees() -> list[str]:
    """The trees a tool may read: Python's own (the venv and its base) and the system's."""
    trees = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *SYSTEM_TREES}
    return sorted(os.path.realpath(t) for t in trees if os.path.exists(t))


def _beneath(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


class Sandbox:
    """Runs one function of Python source in a child process under `limits`, a few calls at a time."""

    def __init__(self, limits: SandboxLimits | None = None, *, concurrency: int | None = None,
                 private: tuple[str, ...] = ()) -> None:
        self.limits = limits or SandboxLimits()
        self._slots = asyncio.Semaphore(concurrency or max(2, os.cpu_count() or 2))
        self.landlock = landlock_abi()
        self.read = readable_trees()
        if not self.landlock:
            log.warning("Landlock is not available on this kernel: custom tools can read every file the "
                        "server's user can, the data directory included")
        for path in private:
            real = os.path.realpath(path)
            exposed = [tree for tree in self.read if _beneath(real, tree)]
            if exposed:
                log.warning("the data directory %s lies inside %s, which custom tools may read", path, exposed[0])

    async def run(self, source: str, name: str, arguments: dict, env: dict[str, str]) -> SandboxResult:
        async with self._slots:
            return await self._run(source, name, arguments, env)

    async def _run(self, source: str, name: str, arguments: dict, env: dict[str, str]) -> SandboxResult:
        limits = self.limits
        workdir = tempfile.mkdtemp(prefix="memproxy-tool-")
        # Only the agent's tool variables and PATH: never the server's own environment and keys.
        child_env = {**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        payload = orjson.dumps({"source": source, "name": name, "arguments": arguments, "env": list(child_env),
                                "confine": bool(self.landlock), "read": self.read,
                                "write": [workdir, *DEVICES]})
        proc: asyncio.subprocess.Process | None = None
        raw: bytes | None = b""
        try:
            cpu = max(1, int(limits.timeout) + 1)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", CHILD, str(limits.memory_mb * 1024 * 1024), str(cpu), str(limits.output),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                cwd=workdir, env=child_env, start_new_session=True)
            try:
                raw = await asyncio.wait_for(self._exchange(proc, payload), limits.timeout)
            except asyncio.TimeoutError:
                return SandboxResult(False, f"timed out after {limits.timeout:g} seconds and was stopped")
        finally:
            if proc is not None:
                # Killed before it is reaped, so the group id cannot have been reused yet.
                _kill_group(proc)
                await proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)
        if raw is None:
            return SandboxResult(False, "produced too much output and was stopped")
        return _answer(raw, proc.returncode if proc.returncode is not None else -1)

    async def _exchange(self, proc: asyncio.subprocess.Process, payload: bytes) -> bytes | None:
        """Send the call, read the answer; None once it grows past what any honest answer needs."""
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(payload)
        try:
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child died before reading; its exit status says why
        cap = 8 * self.limits.output + 65536  # JSON escaping can grow text several times
        chunks: list[bytes] = []
        size = 0
        while chunk := await proc.stdout.read(65536):
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
        return b"".join(chunks)


def _answer(raw: bytes, returncode: int) -> SandboxResult:
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        return SandboxResult(False, _death(returncode))
    if answer.get("ok"):
        return SandboxResult(True, str(answer.get("result", "")))
    return SandboxResult(False, str(answer.get("error", "unknown error")), answer.get("traceback"))


def _death(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (CPU time limit)" if name in ("SIGXCPU", "SIGKILL") else ""
        return f"was killed by {name}{hint} before it answered"
    return f"exited with status {returncode} before it answered (out of memory, or it called os._exit)"


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The tool may have started processes of its own: the whole session goes.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
