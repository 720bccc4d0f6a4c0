"""The crash harness: memproxy as a real subprocess, SIGKILLed at chosen moments and restarted on its data dir.

Pieces: a launcher (a warm fork server, or plain `python -m proxy serve` with MEMPROXY_CRASH_FORK=0), the
simulator as upstream behind a tripwire that can kill the server the instant a request arrives, and a
tally per kill point printed in the terminal summary with the seed (MEMPROXY_CRASH_SEED replays a run).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import httpx

from helpers import free_port

SEED = int(os.environ.get("MEMPROXY_CRASH_SEED") or random.SystemRandom().randrange(2**32))
START_TIMEOUT_S = 60.0
FORKSERVER = Path(__file__).with_name("forkserver.py")


@dataclass
class Tally:
    """What one kill point did and found, for the summary line."""

    kills: int = 0
    acked_turns: int = 0
    turns_lost: int = 0
    acked_edits: int = 0
    edits_lost: int = 0
    half_turns: int = 0
    starts: list[float] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("kills", "acked_turns", "turns_lost", "acked_edits", "edits_lost", "half_turns"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.starts += other.starts

    def line(self, name: str) -> str:
        start = f"{sum(self.starts) / len(self.starts):.2f}s avg over {len(self.starts)}" if self.starts else "-"
        return (f"{name:<45} kills {self.kills:>3} | acked turns lost {self.turns_lost}/{self.acked_turns} | "
                f"acked edits lost {self.edits_lost}/{self.acked_edits} | half-written turns {self.half_turns} | "
                f"server start {start}")


TALLIES: dict[str, Tally] = {}
SERVER_CPU: list[float] = []  # CPU seconds of each server process, start to SIGKILL (fork server only)


# --- launching -------------------------------------------------------------------------------


class ForkLauncher:
    """Forks servers from tests/crash/forkserver.py, which has the slow imports done already."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(FORKSERVER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lock = threading.Lock()
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"forkserver did not start: {ready}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the fork server answers at once, or has died (EOF)
        if not line:
            raise RuntimeError(f"forkserver exited with {self.proc.wait(timeout=5)}")
        return json.loads(line)

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
            return self._read()

    def spawn(self, argv: list[str], log: Path) -> int:
        return int(self._ask({"spawn": argv, "log": str(log)})["pid"])

    def reap(self, pid: int, timeout: float) -> int | None:
        answer = self._ask({"reap": pid, "timeout": timeout})
        if answer["status"] is not None:
            SERVER_CPU.append(answer["cpu"])
        return answer["status"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # EOF: the fork server kills and reaps every child it still has
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class PopenLauncher:
    """A cold `python -m proxy serve` per start: slower, and the reference for what the fork server does."""

    def __init__(self) -> None:
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, argv: list[str], log: Path) -> int:
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "proxy", *argv], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.procs[proc.pid] = proc
        return proc.pid

    def reap(self, pid: int, timeout: float) -> int | None:
        try:
            status = self.procs[pid].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        del self.procs[pid]
        return status

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(timeout=10)
        self.procs.clear()


Launcher = ForkLauncher | PopenLauncher


class Server:
    """One memproxy process on a data dir; `start` again after `kill` is a restart after a crash."""

    def __init__(self, launcher: Launcher, data_dir: Path, upstream_url: str, database_url: str | None = None) -> None:
        self.launcher = launcher
        self.data_dir = data_dir
        self.upstream_url = upstream_url
        self.database_url = database_url  # PostgreSQL (a schema of its own) instead of the data dir's files
        self.log = data_dir.parent / f"{data_dir.name}.log"
        self.pid: int | None = None
        self.base_url = ""
        self._probe = httpx.Client(timeout=2)  # one client for every health poll: each new one costs ~10 ms CPU

    def start(self) -> float:
        """Start and wait until /v1/health answers; the seconds it took."""
        assert self.pid is None, "already running"
        t0 = time.monotonic()
        for _ in range(3):
            logged = self.log.stat().st_size if self.log.exists() else 0
            if self._start_on(free_port(), t0):
                return time.monotonic() - t0
            if "address already in use" not in self.log.read_text(errors="replace")[logged:].lower():
                raise RuntimeError(f"memproxy exited during start-up:\n{self.log_tail()}")
        raise RuntimeError(f"memproxy found no free port in 3 tries:\n{self.log_tail()}")

    def _start_on(self, port: int, t0: float) -> bool:
        """True once /v1/health answers; False if the process exited first."""
        self.base_url = f"http://127.0.0.1:{port}"
        argv = ["serve", "--port", str(port), "--data-dir", str(self.data_dir),
                "--upstream-url", self.upstream_url, "--upstream-timeout", "20"]
        if self.database_url:
            argv += ["--database-url", self.database_url]
        pid = self.launcher.spawn(argv, self.log)
        self.pid = pid
        while True:
            try:
                answered = self._probe.get(self.base_url + "/v1/health").status_code == 200
            except httpx.HTTPError:
                answered = False
            # Alive after answering, too: the port is ours, not a process that took it while we started.
            if self.launcher.reap(pid, 0) is not None:
                self.pid = None
                return False
            if answered:
                return True
            if time.monotonic() - t0 > START_TIMEOUT_S:
                self.kill()
                raise RuntimeError(f"memproxy did not answer /v1/health within {START_TIMEOUT_S}s:\n{self.log_tail()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL (if still running) and wait until the process is gone, so its files are released."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.launcher.reap(pid, 15.0) is None:
            raise RuntimeError(f"memproxy pid {pid} survived SIGKILL for 15 s")

    def close(self) -> None:
        self.kill()
        self._probe.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# --- the upstream ------------------------------------------------------------------------------


@dataclass
class _Trap:
    pid: int
    match: Callable[[dict[str, Any]], bool]
    delay_s: float
    fired: threading.Event = field(default_factory=threading.Event)


class Tripwire:
    """ASGI middleware before the simulator: SIGKILLs an armed pid when a matching chat request arrives.

    The kill happens before the simulator answers, i.e. the instant memproxy has sent that request.
    One trap per server pid, so servers of parallel lanes share one upstream.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._traps: dict[int, _Trap] = {}

    def arm(self, pid: int, match: Callable[[dict[str, Any]], bool], delay_s: float) -> threading.Event:
        trap = _Trap(pid, match, delay_s)
        self._traps[pid] = trap
        return trap.fired

    def disarm(self, pid: int | None = None) -> None:
        if pid is None:
            self._traps.clear()
        else:
            self._traps.pop(pid, None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self._traps or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        parts, more = [], True
        while more:
            message = await receive()
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        for trap in list(self._traps.values()) if isinstance(data, dict) else ():
            if trap.match(data):
                self._traps.pop(trap.pid, None)
                time.sleep(trap.delay_s)  # blocks the simulator's loop for <= a few ms, on purpose: precise
                try:
                    os.kill(trap.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                trap.fired.set()
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


