"""`/metrics` when several memproxy processes serve together (`--workers N`): prometheus-client's multiprocess mode.

The parent creates a private directory and hands it to its workers as PROMETHEUS_MULTIPROC_DIR (it must be
in their environment before they import prometheus_client); each worker's counters, histograms and
gauges live in memory-mapped files there, and whichever worker answers a scrape sums them all. The
parent removes the directory when it exits.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from tools.sandbox import pid_alive

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def directory() -> str | None:
    """The shared directory when this process is one of several, else None."""
    return os.environ.get(ENV) or None


@contextlib.contextmanager
def shared_directory() -> Iterator[str]:
    """For a parent about to start workers: a fresh private directory in PROMETHEUS_MULTIPROC_DIR, removed after.

    Always a new one: files left by an earlier run would be added to this run's counters.
    """
    path = tempfile.mkdtemp(prefix="memproxy-metrics-")
    previous = os.environ.get(ENV)
    os.environ[ENV] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def enter_worker() -> None:
    """In a forked worker, before any metric exists: values go to the shared directory's files.

    prometheus_client picks its value class when first imported, which the parent did before the directory
    was set; a forked worker must pick again.
    """
    if directory() is not None:
        from prometheus_client import values

        values.ValueClass = values.get_value_class()


def worker_exited(pid: int) -> None:
    """A worker is gone: its live gauges (turns in flight) stop counting. Its counters stay in the totals."""
    from prometheus_client import multiprocess

    if directory() is not None:
        multiprocess.mark_process_dead(pid)


def forget_dead_workers(path: str) -> None:
    """Drop the live gauges of workers that died without saying so (SIGKILL, OOM): whatever supervises them."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        found = _LIVE_FILE.search(os.path.basename(name))
        if found is not None and not pid_alive(int(found.group(1))):
            worker_exited(int(found.group(1)))


def render(path: str, per_process: Collector) -> bytes:
    """Every worker's metrics summed, plus this process's sampled ones (RSS, caches), labelled with its pid."""
    from prometheus_client import multiprocess

    forget_dead_workers(path)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    registry.register(_WithPid(per_process))
    return generate_latest(registry)


class _WithPid(Collector):
    """Values only this process knows (its memory, its caches): the answering worker's, said so by a label."""

    def __init__(self, inner: Collector) -> None:
        self.inner = inner
        self.pid = str(os.getpid())

    def collect(self) -> Iterator[Any]:
        for family in self.inner.collect():
            samples = family.samples
            family.samples = [s._replace(labels={**s.labels, "pid": self.pid}) for s in samples]
            yield family

    def describe(self) -> list[Any]:
        return []
