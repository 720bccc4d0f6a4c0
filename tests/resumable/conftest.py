"""Fixtures of the resumable-stream suite: real Redis under a key prefix per test, servers that use it."""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterator

import pytest
import redis




@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    prefix = f"mpt:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def keys(redis_url: str, redis_prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def resumable_server(make_server: Callable[..., Any], redis_url: str,
                     redis_prefix: str) -> Callable[..., Any]:
    """A server with Redis: short keep-alives, so followers notice quiet runs quickly."""

    def start(**overrides: Any) -> Any:
        values: dict[str, Any] = {"redis_url": redis_url, "redis_prefix": redis_prefix, "keepalive_interval": 0.2}
        values.update(overrides)
        return make_server(**values)

    return start


@pytest.fixture
def processes(tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """Start memproxy subprocesses; every one is stopped (or was killed) by the end of the test."""
    from processes import ServerProcess

    started: list[ServerProcess] = []

    def start(name: str, env: dict[str, str]) -> ServerProcess:
        started.append(ServerProcess(tmp_path / name, env))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def shared_postgres(request: pytest.FixtureRequest) -> Iterator[str]:
    """One PostgreSQL schema that several processes share (dropped afterwards)."""
    import pg

    admin = request.getfixturevalue("postgres_url")
    name, url = pg.run_blocking(pg.create_schema(admin))
    yield url
    pg.run_blocking(pg.drop_schema(admin, name))
