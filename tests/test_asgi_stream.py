"""EventStream and ClientWatch, driven as a server drives them: ASGI messages in, ASGI messages out."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from proxy.asgi_stream import ClientWatch, EventStream, LastChunk

SCOPE: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}


class Connection:
    """The server side of one request: `receive` blocks until `leave()`, `send` records each message."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.left = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self.left.set()

    def bodies(self) -> list[tuple[bytes, bool]]:
        return [(m["body"], m["more_body"]) for m in self.sent if m["type"] == "http.response.body"]


async def _chunks(*chunks: bytes, last: bool = False) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(chunks):
        yield LastChunk(chunk) if last and i == len(chunks) - 1 else chunk


def test_a_last_chunk_carries_the_end_of_the_body() -> None:
    async def run() -> list[tuple[bytes, bool]]:
        conn = Connection()
        await EventStream(_chunks(b"a", b"b", last=True))(SCOPE, conn.receive, conn.send)
        return conn.bodies()

    assert asyncio.run(run()) == [(b"a", True), (b"b", False)]


def test_a_plain_iterator_ends_with_an_empty_body() -> None:
    async def run() -> list[tuple[bytes, bool]]:
        conn = Connection()
        await EventStream(_chunks(b"a", b"b"))(SCOPE, conn.receive, conn.send)
        return conn.bodies()

    assert asyncio.run(run()) == [(b"a", True), (b"b", True), (b"", False)]


def test_a_client_gone_before_the_stream_starts_stops_it_where_it_next_waits() -> None:
    async def run() -> tuple[bool, list[tuple[bytes, bool]], bool]:
        conn = Connection()
        watch = ClientWatch(conn.receive)
        conn.leave()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        stopped = False

        async def slow() -> AsyncIterator[bytes]:
            nonlocal stopped
            yield b"first"
            try:
                await asyncio.sleep(30)
                yield b"never"
            except asyncio.CancelledError:
                stopped = True
                raise

        await EventStream(slow(), watch=watch)(SCOPE, conn.receive, conn.send)
        return watch.gone, conn.bodies(), stopped

    gone, bodies, stopped = asyncio.run(run())
    assert gone and stopped
    assert bodies == [(b"first", True)]


def test_a_client_gone_before_a_stream_that_never_waits_still_gets_all_of_it() -> None:
    async def run() -> list[tuple[bytes, bool]]:
        conn = Connection()
        watch = ClientWatch(conn.receive)
        conn.leave()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await EventStream(_chunks(b"a", b"b", last=True), watch=watch)(SCOPE, conn.receive, conn.send)
        await asyncio.sleep(0)  # a cancel left behind would land here
        return conn.bodies()

    assert asyncio.run(run()) == [(b"a", True), (b"b", False)]


def test_a_client_leaving_mid_stream_cancels_the_body_and_the_response_ends_quietly() -> None:
    async def run() -> tuple[list[tuple[bytes, bool]], bool]:
        conn = Connection()
        finished = False

        async def endless() -> AsyncIterator[bytes]:
            nonlocal finished
            try:
                while True:
                    yield b"tick"
                    await asyncio.sleep(0.01)
            finally:
                finished = True

        asyncio.get_running_loop().call_later(0.035, conn.leave)
        await EventStream(endless())(SCOPE, conn.receive, conn.send)
        return conn.bodies(), finished

    bodies, finished = asyncio.run(run())
    assert finished and 2 <= len(bodies) and all(b == (b"tick", True) for b in bodies)


def test_a_watch_closed_unadopted_stops_listening() -> None:
    async def run() -> bool:
        conn = Connection()
        watch = ClientWatch(conn.receive)
        await asyncio.sleep(0)
        watch.close()
        await asyncio.sleep(0)
        conn.leave()
        await asyncio.sleep(0)
        return watch.gone

    assert asyncio.run(run()) is False
