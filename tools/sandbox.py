"""Run custom tool code outside the server: a pool of started, limited subprocesses, each used for one call.

Every call gets a process of its own (its environment, working directory and limits), so nothing a tool
leaves behind (threads, globals, monkey-patches) can reach the next call. The interpreter's start-up
(20-40 ms here, hundreds under load) is paid ahead: `pool` children wait, already running, for the call
they will serve, and a new one is started as soon as one is taken. A waiting child holds nothing: it
learns the tool's source, arguments and variables only with its call. See README "Tools" for what this
does and does not protect against.
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
# Working dirs are named after the server process that made them, so a server can tell which ones a killed
# server left behind (a SIGKILL runs no cleanup) and remove them when it starts.
WORKDIR_PREFIX = "memproxy-tool-"


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


def sweep_orphans(root: str | None = None) -> int:
    """Remove the working dirs of servers that are gone; returns how many. Only our own user's dirs."""
    root = root or tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    removed = 0
    for name in names:
        owner = name[len(WORKDIR_PREFIX):].partition("-")[0]
        if not name.startswith(WORKDIR_PREFIX) or not owner.isdigit() or pid_alive(int(owner)):
            continue
        path = os.path.join(root, name)
        try:
            if os.lstat(path).st_uid != os.getuid() or os.path.islink(path):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += not os.path.exists(path)
    if removed:
        log.info("removed %d working directories of tool processes left by a server that was killed", removed)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process of this id exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True


def _beneath(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


@dataclass
class _Child:
    """A started child waiting on stdin for its one call, and the working directory made for it."""

    proc: asyncio.subprocess.Process
    workdir: str


class Sandbox:
    """Runs one function of Python source in a child process under `limits`, a few calls at a time."""

    def __init__(self, limits: SandboxLimits | None = None, *, concurrency: int | None = None,
                 private: tuple[str, ...] = (), pool: int = 2) -> None:
        self.limits = limits or SandboxLimits()
        self._slots = asyncio.Semaphore(concurrency or max(2, os.cpu_count() or 2))
        self.pool = pool
        self._spare: list[_Child] = []
        self._starting = 0
        self._starts: set[asyncio.Task[None]] = set()
        self._closed = False
        self.landlock = landlock_abi()
        self.read = readable_trees()
        sweep_orphans()
        if not self.landlock:
            log.warning("Landlock is not available on this kernel: custom tools can read every file the "
                        "server's user can, the data directory included")
        for path in private:
            real = os.path.realpath(path)
            exposed = [tree for tree in self.read if _beneath(real, tree)]
            if exposed:
                log.warning("the data directory %s lies inside %s, which custom tools may read", path, exposed[0])

    async def run(self, source: str, name: str, arguments: dict[str, object], env: dict[str, str]) -> SandboxResult:
        async with self._slots:
            return await self._run(source, name, arguments, env)

    async def _start(self) -> _Child:
        limits = self.limits
        workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        cpu = max(1, int(limits.timeout) + 1)
        try:
            # Started with PATH alone: the call brings the tool's own variables, never the server's.
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", CHILD, str(limits.memory_mb * 1024 * 1024), str(cpu), str(limits.output),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                cwd=workdir, env={"PATH": _path()}, start_new_session=True)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return _Child(proc, workdir)

    async def _take(self) -> _Child:
        """A waiting child (a fresh one if none is ready); a replacement starts behind it."""
        child = None
        while self._spare and child is None:
            candidate = self._spare.pop()
            if candidate.proc.returncode is None:
                child = candidate
            else:
                await _discard(candidate)
        if child is None:
            child = await self._start()
        self._refill()
        return child

    def _refill(self) -> None:
        while not self._closed and len(self._spare) + self._starting < self.pool:
            self._starting += 1
            task = asyncio.get_running_loop().create_task(self._start_spare(), name="sandbox-spare")
            self._starts.add(task)
            task.add_done_callback(self._starts.discard)

    async def _start_spare(self) -> None:
        try:
            child = await self._start()
        except Exception as exc:  # noqa: BLE001 - the next call starts its own child instead
            log.warning("could not start a spare tool process: %s", type(exc).__name__)
            return
        finally:
            self._starting -= 1
        if self._closed:
            await _discard(child)
        else:
            self._spare.append(child)

    async def close(self) -> None:
        """Stop the waiting children and remove their directories."""
        self._closed = True
        await asyncio.gather(*self._starts, return_exceptions=True)  # each discards what it started
        spare, self._spare = self._spare, []
        for child in spare:
            await _discard(child)

    async def _run(self, source: str, name: str, arguments: dict[str, object], env: dict[str, str]) -> SandboxResult:
        limits = self.limits
        child_env = {**env, "PATH": _path()}
        child = await self._take()
        proc, workdir = child.proc, child.workdir
        payload = orjson.dumps({"source": source, "name": name, "arguments": arguments, "env": child_env,
                                "confine": bool(self.landlock), "read": self.read,
                                "write": [workdir, *DEVICES]})
        raw: bytes | None = b""
        try:
            try:
                raw = await asyncio.wait_for(self._exchange(proc, payload), limits.timeout)
            except asyncio.TimeoutError:
                return SandboxResult(False, f"timed out after {limits.timeout:g} seconds and was stopped")
        finally:
            await _discard(child)
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


def _path() -> str:
    return os.environ.get("PATH", "/usr/bin:/bin")


async def _discard(child: _Child) -> None:
    # Killed before it is reaped, so the group id cannot have been reused yet.
    _kill_group(child.proc)
    await child.proc.wait()
    shutil.rmtree(child.workdir, ignore_errors=True)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # The tool may have started processes of its own: the whole session goes.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
