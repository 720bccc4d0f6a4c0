"""`QuietServer`: uvicorn's server waking once a second when idle, and at once when told to stop."""

from __future__ import annotations

import signal
import time
from email.utils import parsedate_to_datetime

import httpx
import uvicorn

from helpers import free_port, serve_in_thread
from proxy.quiet_server import QuietServer


async def hello(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


def config(port: int) -> uvicorn.Config:
    return uvicorn.Config(hello, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


class CountedTicks(QuietServer):
    ticks = 0  # how many times the main loop has looked at the clock (and at should_exit)

    async def on_tick(self, counter: int) -> bool:
        self.ticks += 1
        return await super().on_tick(counter)


def test_an_idle_server_looks_at_the_clock_about_once_a_second_and_keeps_the_date_header_current() -> None:
    port = free_port()
    server, thread = serve_in_thread(config(port), server_class=CountedTicks)
    try:
        assert isinstance(server, CountedTicks)
        before = server.ticks
        time.sleep(2.5)
        # uvicorn's own loop would have looked 25 times.
        assert server.ticks - before <= 4
        reply = httpx.get(f"http://127.0.0.1:{port}/")
        assert reply.text == "hello"
        sent = parsedate_to_datetime(reply.headers["date"]).timestamp()
        assert abs(sent - time.time()) < 3
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()


class HourlyTick(QuietServer):
    tick = 3600.0  # a stop that waited for the next tick would wait up to an hour


def test_setting_should_exit_from_another_thread_stops_the_server_without_waiting_for_a_tick() -> None:
    port = free_port()
    server, thread = serve_in_thread(config(port), server_class=HourlyTick)
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "hello"
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_signal_stops_the_server_without_waiting_for_a_tick() -> None:
    port = free_port()
    server, thread = serve_in_thread(config(port), server_class=HourlyTick)
    server.handle_exit(signal.SIGTERM, None)  # what uvicorn's signal handler calls
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert server.should_exit
