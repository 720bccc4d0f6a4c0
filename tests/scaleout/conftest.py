"""Fixtures of the scale-out suite: fleets of replicas (see tests/replicas.py), cleaned up whatever happens."""

from __future__ import annotations

from typing import Callable, Iterator

import pytest

from replicas import ROOT, Fleet, Replica  # noqa: F401 - re-exported for the suite's modules

@pytest.fixture
def make_fleet(postgres_url: str, redis_url: str, sim_url: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Callable[[], Fleet]]:
    """Fleets on fresh schemas and prefixes; all of them stopped and cleaned up at teardown."""
    import pg

    made: list[tuple[Fleet, str]] = []

    def make() -> Fleet:
        schema, url = pg.run_blocking(pg.create_schema(postgres_url))
        fleet = Fleet(url, redis_url, sim_url, tmp_path_factory.mktemp("fleet"))
        made.append((fleet, schema))
        return fleet

    yield make
    for fleet, schema in made:
        fleet.stop()
        fleet.drop_keys()
        pg.run_blocking(pg.drop_schema(postgres_url, schema))


@pytest.fixture(scope="module")
def fleet3(postgres_url: str, redis_url: str, sim_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Fleet]:
    """Three replicas shared by a module's tests (each test makes its own agents)."""
    import pg

    schema, url = pg.run_blocking(pg.create_schema(postgres_url))
    fleet = Fleet(url, redis_url, sim_url, tmp_path_factory.mktemp("fleet3"))
    try:
        fleet.start(3)
        yield fleet
    finally:
        fleet.stop()
        fleet.drop_keys()
        pg.run_blocking(pg.drop_schema(postgres_url, schema))
