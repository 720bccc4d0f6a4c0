"""`memproxy serve --workers N`: N forked processes accepting on one listening socket, and their supervisor.

The parent binds the port once (preflight), then forks the workers before any thread or event loop
exists; each worker runs its own uvicorn server on the inherited socket, and the kernel hands each new
connection to one of the processes blocked in accept(). The parent only supervises: it forwards
SIGTERM/SIGINT, and it replaces a worker that dies while the others serve (a worker that dies at
start-up stops the whole server instead, as a single process would).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from typing import Callable

from proxy import metrics_mp

log = logging.getLogger("memproxy")

# A worker that exits with an error within this many seconds of its start failed to start: no restart loop.
STARTUP_GRACE = 10.0


class Supervisor:
    def __init__(self, count: int, run_worker: Callable[[int], int]) -> None:
        self.count = count
        self.run_worker = run_worker
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, started at)
        self.stopping = False
        self.status = 0

    def _fork(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: default signal handling (uvicorn installs its own), never returns
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 1
            try:
                code = self.run_worker(index)
            except SystemExit as exc:  # uvicorn exits with 3 when the application fails to start
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - printed, then the worker exits with 1
                log.exception("worker %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = (index, time.monotonic())

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for index in range(self.count):
            self._fork(index)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index, started = self.children.pop(pid, (-1, 0.0))
            metrics_mp.worker_exited(pid)  # its turns in flight stop counting in /metrics
            if index < 0 or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code > 0 and time.monotonic() - started < STARTUP_GRACE:  # it failed to start (a signal is no failure)
                log.error("worker %d (pid %d) exited with %d while starting; stopping the server", index, pid, code)
                self.status = 1
                self._stop(signal.SIGTERM, None)
                continue
            log.error("worker %d (pid %d) exited with %d; starting a new one", index, pid, code)
            self._fork(index)
        return self.status


def serve_workers(count: int, sock: socket.socket, run_worker: Callable[[int], int]) -> int:
    """Fork `count` workers that serve `sock` and supervise them until SIGTERM/SIGINT; the exit status."""
    sock.set_inheritable(True)
    return Supervisor(count, run_worker).run()
