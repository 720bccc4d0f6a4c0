"""Fixtures of the crash suite (the harness itself is in crash_harness.py) and its summary with the seed."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from helpers import ON_POSTGRES

from crash_harness import SEED, SERVER_CPU, TALLIES, ForkLauncher, Launcher, PopenLauncher, Server, Tally, Tripwire


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
    if SERVER_CPU:
        average = sum(SERVER_CPU) / len(SERVER_CPU)
        terminalreporter.write_line(f"server processes: {len(SERVER_CPU)}, {average:.2f} CPU-s each on average "
                                    "from start to SIGKILL (start-up is most of it)")


@pytest.fixture(scope="session")
def launcher() -> Iterator[Launcher]:
    """The fork server (restarts ~2.5 s cheaper), or cold starts with MEMPROXY_CRASH_FORK=0 or if it cannot run."""
    chosen: Launcher
    if os.environ.get("MEMPROXY_CRASH_FORK") == "0":
        chosen = PopenLauncher()
    else:
        try:
            chosen = ForkLauncher()
        except RuntimeError as exc:
            warnings.warn(f"crash suite: cold starts, the fork server cannot run: {exc}", stacklevel=1)
            chosen = PopenLauncher()
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
def server_factory(request: pytest.FixtureRequest, launcher: Launcher, upstream: tuple[str, Tripwire],
                   tmp_path: Path) -> Iterator[Callable[[str], Server]]:
    """Servers on their own data dirs under tmp_path (under MEMPROXY_TEST_BACKEND=postgres, each on a fresh
    schema of the session database instead); every one is killed at teardown, whatever happened."""
    import pg

    made: list[Server] = []
    schemas: list[str] = []
    database = request.getfixturevalue("postgres_url") if ON_POSTGRES else None

    def make(name: str) -> Server:
        data_dir = tmp_path / name
        url = None
        if database is not None:
            schema, url = pg.run_blocking(pg.create_schema(database))
            schemas.append(schema)
        made.append(Server(launcher, data_dir, upstream[0], url))
        return made[-1]

    yield make
    upstream[1].disarm()
    for server in made:
        server.close()
    for schema in schemas:
        pg.run_blocking(pg.drop_schema(database, schema))  # type: ignore[arg-type]
