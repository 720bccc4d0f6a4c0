"""Fixtures of the crash suite (the harness itself is in crash_harness.py) and its summary with the seed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from crash_harness import SEED, TALLIES, ForkLauncher, Launcher, PopenLauncher, Server, Tally, Tripwire


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLIES:
        return
    terminalreporter.section("crash suite")
    terminalreporter.write_line(f"seed {SEED} (replay with MEMPROXY_CRASH_SEED={SEED})")
    total = Tally()
    for name, tally in TALLIES.items():
        terminalreporter.write_line(tally.line(name))
        total.add(tally)
    terminalreporter.write_line(total.line("total"))


@pytest.fixture(scope="session")
def launcher() -> Iterator[Launcher]:
    chosen: Launcher = PopenLauncher() if os.environ.get("MEMPROXY_CRASH_FORK") == "0" else ForkLauncher()
    yield chosen
    chosen.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, Tripwire]]:
    from proxy.sim import SimConfig, run_sim_in_thread

    wires: list[Tripwire] = []

    def wrap(app: Any) -> Tripwire:
        wires.append(Tripwire(app))
        return wires[0]

    base_url, stop = run_sim_in_thread(SimConfig(), wrap=wrap)
    yield base_url, wires[0]
    stop()


@pytest.fixture
def server_factory(launcher: Launcher, upstream: tuple[str, Tripwire], tmp_path: Path
                   ) -> Iterator[Callable[[str], Server]]:
    """Servers on their own data dirs under tmp_path; every one is killed at teardown, whatever happened."""
    made: list[Server] = []

    def make(name: str) -> Server:
        data_dir = tmp_path / name
        made.append(Server(launcher, data_dir, upstream[0]))
        return made[-1]

    yield make
    upstream[1].disarm()
    for server in made:
        server.close()
