"""Helpers shared by the HTTP-level tests (importable as `helpers`: tests/ is on sys.path)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from typing import Any, Callable, Coroutine

import httpx
import openai
import uvicorn

from proxy.quiet_server import QuietServer

# MEMPROXY_TEST_BACKEND=postgres serves the `server` and `make_server` fixtures from PostgreSQL (a schema each).
ON_POSTGRES = os.environ.get("MEMPROXY_TEST_BACKEND", "embedded") == "postgres"


def create_agent(base_url: str, **extra: Any) -> str:
    body = {"name": "t", "system": "You are a test agent.",
            "memory_blocks": [{"label": "human", "value": "Name: Ada", "limit": 200},
                              {"label": "persona", "value": "I am helpful."},
                              {"label": "policy", "value": "Be kind.", "read_only": True}]}
    body.update(extra)
    response = httpx.post(base_url + "/v1/agents/", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)


def system_of(request: dict[str, Any]) -> str:
    assert request["messages"][0]["role"] == "system"
    return request["messages"][0]["content"]


def agent_calls(sim_requests: Any, agent_marker: str = "You are a test agent.") -> list[dict[str, Any]]:
    return [r for r in sim_requests() if r["messages"][0]["content"].startswith(agent_marker)]


def raw_events(response: httpx.Response) -> tuple[list[Any], list[str]]:
    """(data payloads in order, comment lines) of an SSE body."""
    events: list[Any] = []
    comments: list[str] = []
    for block in response.text.split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                payload = line[6:]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
            elif line.startswith(":"):
                comments.append(line)
    return events, comments


def sim_headers(**options: Any) -> dict[str, str]:
    """Script the simulator through memproxy: X-Sim-* headers are forwarded upstream."""
    return {"X-Sim-" + key.replace("_", "-"): value if isinstance(value, str) else json.dumps(value)
            for key, value in options.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_in_thread(config: uvicorn.Config, run: Callable[[Coroutine[Any, Any, None]], Any] = asyncio.run,
                    timeout: float = 30.0, server_class: type[QuietServer] = QuietServer
                    ) -> tuple[QuietServer, threading.Thread]:
    """uvicorn serving `config` on a thread of its own (`run` starts its loop), once started; to stop it, set
    `server.should_exit` and join the thread."""
    server = server_class(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=lambda: run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    return server, thread


def os_thread_names() -> set[str]:
    """The names the OS knows this process's threads by (/proc/self/task/*/comm, which Python does not set)."""
    names = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                names.add(comm.read().strip())
        except OSError:
            continue  # the thread ended meanwhile
    return names
