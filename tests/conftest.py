"""Shared fixtures: the real server on a real port, the simulator as its upstream, real services."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any, Callable, Iterator

import httpx
import pytest
import uvicorn

from helpers import ON_POSTGRES, free_port
from proxy.app import build_app
from proxy.cli import http_protocol
from proxy.config import Settings
from proxy.quiet_server import QuietServer

IN_CI = os.environ.get("CI", "").lower() == "true"


class PostgresSchemas:
    """One fresh schema per data dir, so a server restarted on the same data dir finds its database again."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.by_data_dir: dict[str, tuple[str, str]] = {}

    def url_for(self, data_dir: str) -> str:
        import pg

        if data_dir not in self.by_data_dir:
            self.by_data_dir[data_dir] = pg.run_blocking(pg.create_schema(self.request.getfixturevalue("postgres_url")))
        return self.by_data_dir[data_dir][1]

    def drop_all(self) -> None:
        import pg

        for name, _ in self.by_data_dir.values():
            pg.run_blocking(pg.drop_schema(self.request.getfixturevalue("postgres_url"), name))


class ServerThread:
    """memproxy served by uvicorn on its own thread and event loop, reachable over real HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = settings.port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = build_app(settings)
        # The HTTP protocol `memproxy serve` runs, so every request of the suite goes through it.
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on", timeout_graceful_shutdown=1, http=http_protocol())
        self.server = QuietServer(config)  # stops as soon as asked, not at its next tick
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("memproxy did not start")
            time.sleep(0.01)
        return self

    def ask_to_stop(self) -> None:
        """Start the shutdown and return: `stop()` waits for it."""
        self.server.should_exit = True

    def stop(self) -> None:
        self.ask_to_stop()
        self.thread.join(timeout=30)

    @property
    def rt(self) -> Any:
        return self.app.state.rt

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's loop (to reach its runtime from a test)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    from proxy.sim import SimConfig, run_sim_in_thread

    base_url, stop = run_sim_in_thread(SimConfig(embedding_dim=32))
    yield base_url
    stop()


@pytest.fixture
def make_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                sim_url: str) -> Iterator[Callable[..., ServerThread]]:
    """Start servers with custom settings; every one is stopped at teardown."""
    started: list[ServerThread] = []
    schemas = PostgresSchemas(request)

    def start(data_dir: str | None = None, **overrides: Any) -> ServerThread:
        values: dict[str, Any] = {
            "port": free_port(),
            "data_dir": data_dir or str(tmp_path_factory.mktemp("data")),
            "upstream_url": sim_url,
        }
        values.update(overrides)
        if ON_POSTGRES and "database_url" not in values:
            values["database_url"] = schemas.url_for(values["data_dir"])
        server = ServerThread(Settings.load(values, environ={})).start()
        started.append(server)
        return server

    yield start
    for server in started:  # all asked first, then waited for: their shutdowns overlap
        server.ask_to_stop()
    for server in started:
        server.stop()
    schemas.drop_all()


class WorkersServer:
    """`memproxy serve --workers N` as a subprocess (MEMPROXY_TEST_WORKERS=N): reachable over HTTP only."""

    def __init__(self, replica: Any) -> None:
        self.replica = replica
        self.port = replica.port
        self.base_url = replica.base_url

    @property
    def rt(self) -> Any:
        pytest.skip("reaches into the in-process runtime, which a --workers server does not have")

    def call(self, coro: Any) -> Any:
        coro.close()
        pytest.skip("runs code on the server's loop, which a --workers server does not have")


TEST_WORKERS = int(os.environ.get("MEMPROXY_TEST_WORKERS") or 1)


def _workers_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                    sim_url: str) -> Iterator[WorkersServer]:
    """The module's server as N worker processes on PostgreSQL and Redis (a fresh schema and key prefix)."""
    import pg
    from replicas import Fleet

    postgres_url = request.getfixturevalue("postgres_url")
    schema, url = pg.run_blocking(pg.create_schema(postgres_url))
    fleet = Fleet(url, request.getfixturevalue("redis_url"), sim_url, tmp_path_factory.mktemp("workers"))
    try:
        yield WorkersServer(fleet.replica("--workers", str(TEST_WORKERS)))
    finally:
        fleet.stop()
        fleet.drop_keys()
        pg.run_blocking(pg.drop_schema(postgres_url, schema))


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           sim_url: str) -> Iterator[Any]:
    """One shared server per test module; tests create their own agents."""
    if TEST_WORKERS > 1:
        yield from _workers_server(request, tmp_path_factory, sim_url)
        return
    values: dict[str, Any] = {"port": free_port(), "data_dir": str(tmp_path_factory.mktemp("data")),
                              "upstream_url": sim_url}
    schemas = PostgresSchemas(request)
    if ON_POSTGRES:
        values["database_url"] = schemas.url_for(values["data_dir"])
    srv = ServerThread(Settings.load(values, environ={})).start()
    assert srv.rt.backend.name == ("postgresql" if ON_POSTGRES else "embedded")
    yield srv
    srv.stop()
    schemas.drop_all()


@pytest.fixture
def http(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def sim_requests(sim_url: str) -> Callable[[], list[dict[str, Any]]]:
    """The request bodies the simulator received, oldest first."""
    root = sim_url.rsplit("/v1", 1)[0]

    def fetch() -> list[dict[str, Any]]:
        return httpx.get(root + "/sim/requests").json()

    httpx.delete(root + "/sim/requests")
    return fetch


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("MEMPROXY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means the service is not there
        if IN_CI:
            pytest.fail(f"Redis is required under CI=true but {url} is unreachable: {exc}")
        pytest.skip(f"Redis not reachable at {url}: {exc}")
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL for this session (dropped at the end); tests take a schema each."""
    import pg

    admin_url = os.environ.get("MEMPROXY_TEST_POSTGRES_URL", pg.DEFAULT_ADMIN_URL)
    try:
        name, url = pg.create_database(admin_url)
    except Exception as exc:  # noqa: BLE001 - any failure means the service is not there
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true but {admin_url} is unusable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {admin_url}: {exc}")
    yield url
    pg.drop_database(admin_url, name)


@pytest.fixture
async def postgres_schema_url(postgres_url: str) -> Any:
    """A URL on an empty schema of the session database, dropped after the test."""
    import pg

    name, url = await pg.create_schema(postgres_url)
    yield url
    await pg.drop_schema(postgres_url, name)


@pytest.fixture(scope="session")
def pgvector_url() -> Iterator[str]:
    """A database with pgvector on a PostgreSQL 16 the `pgserver` package runs in a temp dir (stopped at the end)."""
    import pg

    try:
        server, admin_url = pg.start_pgvector_server()
    except Exception as exc:  # noqa: BLE001 - not installed, or cannot run here
        if IN_CI:
            pytest.fail(f"pgserver (PostgreSQL with pgvector) is required under CI=true but did not start: {exc}")
        pytest.skip(f"pgserver (PostgreSQL with pgvector) did not start: {exc}")
    try:
        _, url = pg.create_database(admin_url)
        pg.run_blocking(pg.admin(url, "CREATE EXTENSION IF NOT EXISTS vector"))
        yield url
    finally:
        pg.stop_pgvector_server(server)


@pytest.fixture
def vector_database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Under MEMPROXY_TEST_BACKEND=postgres, a fresh schema on the pgvector server; else None (embedded)."""
    if not ON_POSTGRES:
        yield None
        return
    import pg

    database = request.getfixturevalue("pgvector_url")
    name, url = pg.run_blocking(pg.create_schema(database))
    yield url
    pg.run_blocking(pg.drop_schema(database, name))
