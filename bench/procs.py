"""The processes under test: the simulator and memproxy, each a real subprocess, killed at exit."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

_LIVE: set[subprocess.Popen[bytes]] = set()
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _kill_all() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        _LIVE.discard(proc)


atexit.register(_kill_all)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memproxy_command() -> list[str]:
    """`.venv/bin/memproxy` beside this interpreter, or `python -m proxy` when it is not installed."""
    exe = Path(sys.executable).parent / "memproxy"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("memproxy")
    return [found] if found else [sys.executable, "-m", "proxy"]


def rss_kb(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status VmRSS."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


AGENT_CACHE_COUNTERS = {"memproxy_agent_cache_loads_total": "loads",
                        "memproxy_agent_cache_refreshes_total": "refreshes",
                        "memproxy_agent_cache_version_reads_total": "version_reads"}


def agent_cache_counts(base_url: str) -> dict[str, float]:
    """A memproxy's agent cache counters from its /metrics: "loads" (agents read from the store so far) and, where
    it counts them, "refreshes" (of those, stale copies brought up to date) and "version_reads" (of those, loads
    that read the agent's version from Redis first); a counter it lacks is left out."""
    out: dict[str, float] = {}
    for line in httpx.get(base_url + "/metrics", timeout=10.0).text.splitlines():
        name, _, value = line.partition(" ")
        if name in AGENT_CACHE_COUNTERS:
            out[AGENT_CACHE_COUNTERS[name]] = float(value)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    return sum(user_system_seconds(pid))


def user_system_seconds(pid: int) -> tuple[float, float]:
    """A process's CPU so far (all its threads, exited ones included), split into user and kernel time: clock
    ticks, so only for spans long enough to hold many."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLK_TCK, int(fields[12]) / _CLK_TCK


def thread_cpu_ns(pid: int) -> dict[int, tuple[str, int]]:
    """Per thread of a process: its name (`comm`) and the CPU time it has run so far in ns
    (/proc/<pid>/task/*/schedstat), for windows too short for clock ticks."""
    out: dict[int, tuple[str, int]] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                ns = int(stat.read().split()[0])
            with open(f"/proc/{pid}/task/{task}/comm") as comm:
                out[int(task)] = (comm.read().strip(), ns)
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return out


def cpu_ns_since(pid: int, before: dict[int, tuple[str, int]]) -> dict[str, int]:
    """CPU in ns each thread name ("event_loop" for the main thread) has run since `before`, a `thread_cpu_ns`
    snapshot; same-named threads add up.

    Taken per thread id: a thread that has exited since counts nothing from then on. A difference of sums
    over the live threads would instead lose its whole lifetime (a pool thread that did the warm-up's work,
    then timed out idle), and could come out below zero.
    """
    out: dict[str, int] = {}
    for tid, (name, ns) in thread_cpu_ns(pid).items():
        key = "event_loop" if tid == pid else name
        out[key] = out.get(key, 0) + ns - before.get(tid, (name, 0))[1]
    return out


class Proc:
    """One server subprocess with its log file, readiness probe and resource readings."""

    def __init__(self, name: str, args: list[str], port: int, health_path: str, log_dir: Path,
                 command: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        self.name, self.port, self.health_path = name, port, health_path
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}-{port}.log"
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen([*(command or memproxy_command()), *args], stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True, env=env)
        _LIVE.add(self.popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            try:
                if httpx.get(self.base + self.health_path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout}s; see {self.log_path}")

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful: memproxy checkpoints its database), then SIGKILL if it lingers."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        _LIVE.discard(self.popen)
        self._log.close()


def start_sim(log_dir: Path, *, ttft_ms: float = 0.0, token_delay_ms: float = 0.0, reply_tokens: int = 12) -> Proc:
    port = free_port()
    proc = Proc("sim", ["sim", "--port", str(port), "--ttft-ms", str(ttft_ms), "--token-delay-ms",
                        str(token_delay_ms), "--reply-tokens", str(reply_tokens)], port, "/sim/health", log_dir)
    proc.wait_ready()
    return proc


def _with_repo_on_path() -> dict[str, str]:
    """This environment, with the checkout holding `bench` first on PYTHONPATH (whatever the working dir)."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def start_fixed_upstream(log_dir: Path) -> Proc:
    """`bench.fixed_upstream`: one fixed answer to every chat request, whatever its body (see there)."""
    port = free_port()
    proc = Proc("fixed-upstream", ["--port", str(port)], port, "/sim/health", log_dir,
                command=[sys.executable, "-m", "bench.fixed_upstream"], env=_with_repo_on_path())
    proc.wait_ready()
    return proc


def start_memproxy(log_dir: Path, data_dir: Path, upstream: str, extra: list[str] | None = None,
                   code: str | None = None) -> Proc:
    """memproxy at log level warning: per-request INFO lines would be measured as memproxy's cost.

    `code`: a checkout to run memproxy's packages from (put first on its PYTHONPATH) instead of this one's."""
    port = free_port()
    args = ["serve", "--port", str(port), "--data-dir", str(data_dir), "--upstream-url", upstream,
            "--log-level", "warning", *(extra or [])]
    env = None if code is None else {**os.environ, "PYTHONPATH": code}
    proc = Proc("memproxy", args, port, "/v1/health/", log_dir, env=env)
    proc.wait_ready(timeout=120.0)
    wait_index_repaired(proc, timeout=600.0)
    return proc


def wait_index_repaired(proc: Proc, timeout: float) -> None:
    """memproxy serves while it repairs its search index at start; measure only once that work is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(proc.base + "/v1/health/", timeout=5.0).json().get("index_repaired_at_start", {})
        if state.get("state") == "done":
            return
        if state.get("state") == "failed":
            raise RuntimeError(f"memproxy's start-up index repair failed; see {proc.log_path}")
        time.sleep(0.1)
    raise RuntimeError(f"memproxy's start-up index repair not done after {timeout}s")
