"""Running the simulator under uvicorn: in the foreground, or in a background thread for tests."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from proxy.quiet_server import QuietServer
from proxy.sim.app import build_sim_app
from proxy.sim.config import SimConfig


def uvicorn_config(config: SimConfig, host: str, port: int, wrap: Callable[[Any], Any] | None = None
                   ) -> uvicorn.Config:
    """uvicorn settings for the simulator: the fastest loop and parser installed, quiet logs.

    `wrap` puts an ASGI middleware around the simulator (tests use it to watch requests go by).
    """
    app = build_sim_app(config)
    return uvicorn.Config(
        wrap(app) if wrap is not None else app,
        host=host,
        port=port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


def run_sim(host: str, port: int, config: SimConfig) -> None:
    """Serve the simulator in the foreground on a fresh (uvloop, when installed) event loop."""
    QuietServer(uvicorn_config(config, host, port)).run()


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"


def run_sim_in_thread(
    config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0, wrap: Callable[[Any], Any] | None = None
) -> tuple[str, Callable[[], None]]:
    """Start the simulator on a daemon thread; returns its `/v1` base URL and an idempotent stop function.

    The listening socket is bound here, before the thread starts, so the port is known and never raced.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    port = sock.getsockname()[1]
    server = QuietServer(uvicorn_config(config or SimConfig(), host, port, wrap))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the caller waiting for startup
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"memproxy-sim:{port}", daemon=True)
    thread.start()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        server.should_exit = True
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()

    deadline = time.monotonic() + 20
    while not server.started:
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            stop()
            raise RuntimeError(f"simulator failed to start on {host}:{port}") from (failure[0] if failure else None)
        time.sleep(0.005)
    # Started means listening; one real connect proves it before callers race in.
    with socket.create_connection((host, port), timeout=5):
        pass
    return _base_url(host, port), stop
