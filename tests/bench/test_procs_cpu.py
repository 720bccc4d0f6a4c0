"""The bench's CPU reading per thread: a thread that exits between two readings must not take CPU away."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.procs import cpu_ns_since, thread_cpu_ns

# A process whose main thread idles while a thread it names "burner" (for the OS) spins for 0.3 s of CPU, then waits for a line
# on stdin before it ends: the test reads the process while the thread is alive, then after it has gone.
CHILD = r"""
import ctypes, sys, threading, time
done = threading.Event()
def burn():
    ctypes.CDLL(None).prctl(15, b"burner", 0, 0, 0)  # PR_SET_NAME: the name /proc shows
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass
    print("burnt", flush=True)
    done.wait()
threading.Thread(target=burn, name="burner").start()
sys.stdin.readline()
done.set()
time.sleep(30)
"""


def _names(pid: int) -> set[str]:
    return {name for name, _ in thread_cpu_ns(pid).values()}


def test_a_thread_that_exits_between_readings_counts_nothing_rather_than_minus_its_lifetime() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "burnt"
        before = thread_cpu_ns(child.pid)
        assert "burner" in {name for name, _ in before.values()}
        burnt = sum(ns for name, ns in before.values() if name == "burner")
        assert burnt >= 250_000_000
        child.stdin.write("\n")
        child.stdin.flush()
        deadline = time.monotonic() + 10
        while "burner" in _names(child.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "burner" not in _names(child.pid)

        used = cpu_ns_since(child.pid, before)
        assert "burner" not in used
        assert all(ns >= 0 for ns in used.values()), used
        assert sum(used.values()) < burnt / 10  # the main thread only woke to read a line
        # What a difference of sums over live threads gives here: the thread's whole lifetime, taken off.
        after_sum = sum(ns for _, ns in thread_cpu_ns(child.pid).values())
        assert after_sum - sum(ns for _, ns in before.values()) < -burnt / 2
    finally:
        child.kill()
        child.wait()


def test_a_thread_started_between_readings_counts_all_it_ran() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys\n" + CHILD.replace(
        'threading.Thread(target=burn, name="burner").start()\n', 'sys.stdin.readline()\nthreading.Thread('
        'target=burn, name="burner").start()\n')], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        time.sleep(0.2)
        before = thread_cpu_ns(child.pid)
        assert "burner" not in {name for name, _ in before.values()}
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "burnt"
        used = cpu_ns_since(child.pid, before)
        assert used["burner"] >= 250_000_000
        assert used["event_loop"] >= 0  # the main thread, named as the bench names it
    finally:
        child.kill()
        child.wait()
