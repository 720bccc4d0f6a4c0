"""A TCP relay that holds every byte for a fixed time each way, and can be cut: a database or Redis across a
network, or going away, on one box.

`NetDelay(host, port, one_way_ms)` listens on a free local port and forwards each connection to `host:port`,
delivering what either side sends `one_way_ms` after it arrived, in order (0: at once). It runs its own event
loop in a daemon thread, so it keeps relaying while the caller blocks (starting a server, say), and its CPU is
the caller's process's, not the measured server's. asyncio sleeps in whole milliseconds (epoll's resolution), so
a delay below 1 ms comes out as about 1 ms: `round_trip_ms()` measures what a query actually waits. `cut()`
resets every connection and refuses new ones (the host is gone), `cut(silent=True)` resets them and then
accepts new ones without ever answering (a host that no longer answers); `restore()` relays again on the same
port. The benches and the tests that take a service away share it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit


def towards(url: str, one_way_ms: float) -> NetDelay:
    """A started relay to the host and port of `url` (postgresql://, redis://); `relay.url(url)` goes through it."""
    parts = urlsplit(url)
    default = {"redis": 6379, "rediss": 6379}.get(parts.scheme, 5432)
    return NetDelay(parts.hostname or "127.0.0.1", parts.port or default, one_way_ms).start()


@contextlib.contextmanager
def delayed(url: str, one_way_ms: float) -> Iterator[str]:
    """`url` itself, or (with a delay) through a relay holding its bytes, stopped after."""
    if one_way_ms <= 0:
        yield url
        return
    relay = towards(url, one_way_ms)
    try:
        yield relay.url(url)
    finally:
        relay.stop()


def add_argument(parser: argparse.ArgumentParser, whose: str) -> None:
    """`--net-delay-ms`, for a bench that puts `whose` (services' names, possessive) a network away."""
    parser.add_argument("--net-delay-ms", type=float, default=0.0,
                        help=f"hold {whose} bytes this long each way, as across a network (default 0)")


class NetDelay:
    def __init__(self, host: str, port: int, one_way_ms: float) -> None:
        self.target = (host, port)
        self.delay = one_way_ms / 1000.0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.silent = False  # cut(silent=True): connections are accepted and never answered
        self._server: asyncio.base_events.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()  # both ends of every relayed connection
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="netdelay", daemon=True)

    def start(self) -> NetDelay:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delay relay did not start")
        return self

    def stop(self) -> None:
        """Cut every connection still open (their pipes end where a closed peer would end them), then stop."""
        async def cut() -> None:
            pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def cut(self, *, silent: bool = False) -> None:
        """Reset every connection (a host gone); refuse new ones, or with `silent` hold them unanswered, until
        `restore()`."""
        async def cut() -> None:
            assert self._server is not None
            self.silent = silent
            if not silent:
                self._server.close()
            for writer in list(self._links):
                writer.transport.abort()  # a reset, as from a host that went away
            self._links.clear()
            if not silent:
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(cut(), self.loop).result(10)

    def restore(self) -> None:
        """Relay again, on the same port."""
        async def listen() -> None:
            self.silent = False
            if self._server is None or not self._server.is_serving():
                self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

        asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)

    def url(self, url: str) -> str:
        """`url` (postgresql://, redis://) with its host and port replaced by this relay's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def round_trip_ms(self, probe: bytes, samples: int = 20) -> float:
        """Median ms for `probe` (a request its target answers with one short reply) through the relay."""
        times = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            for _ in range(samples):
                began = time.perf_counter()
                sock.sendall(probe)
                sock.recv(65536)
                times.append((time.perf_counter() - began) * 1000)
        return sorted(times)[len(times) // 2]

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self._server.close()
            self.loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ends = {writer}
        self._links |= ends
        try:
            if self.silent:
                await reader.read()  # held, answering nothing, until the client gives up or the relay is cut
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            ends.add(up_writer)
            self._links |= ends
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except OSError:
            writer.close()
        except asyncio.CancelledError:
            # `stop` cuts the connection: it ends here. Raised, asyncio's stream server (3.11) would log it, as it
            # reads a handler's outcome with `task.exception()`, which raises for a cancelled task.
            writer.close()
        finally:
            self._links -= ends

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((self.loop.time() + self.delay, data))
        except OSError:
            pass
        finally:
            queue.put_nowait((0.0, b""))
            with contextlib.suppress(OSError, asyncio.CancelledError):  # cancelled: the relay is stopping
                await sender
            writer.close()
