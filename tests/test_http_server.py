"""memproxy's HTTP protocol over real sockets: a response head leaves with what follows it, never later.

uvicorn runs `HttpProtocol` on uvloop in a thread, as `memproxy serve` does; the client is a blocking socket.
Which bytes went out in which system call cannot be told from the client's side (a fast second write lands in
the same `recv`), so each connection's real transport is wrapped in a recorder of the writes the protocol makes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, Callable, Iterator

import pytest
import uvicorn
import uvloop

from helpers import free_port, serve_in_thread
from proxy.cli import http_protocol
from proxy.asgi_stream import WRITE_NOW
from proxy.http_server import BodyWriter, HttpProtocol

HEAD_ONLY_WAIT_S = 0.5
WRITER_OUTCOMES: list[list[bool]] = []


class Recorder:
    """A connection's real transport, logging each write call (a `writelines` is one call, one `writev`)."""

    made: list[Recorder] = []

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []
        Recorder.made.append(self)

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def writelines(self, parts: Any) -> None:
        parts = [bytes(part) for part in parts]
        self.writes.append(b"".join(parts))
        self.transport.writelines(parts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class RecordedProtocol(HttpProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(Recorder(transport))  # type: ignore[arg-type]


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] == "websocket":  # accepted, one text message, closed
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "hello"})
        await send({"type": "websocket.close"})
        return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    sse = [(b"content-type", b"text/event-stream")]
    if path == "/stream":  # the head, then at once the first chunk, then a pause, then the end
        await send({"type": "http.response.start", "status": 200, "headers": sse})
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
    elif path == "/late":  # the head, then nothing for a while
        await send({"type": "http.response.start", "status": 200, "headers": sse})
        await asyncio.sleep(HEAD_ONLY_WAIT_S)
        await send({"type": "http.response.body", "body": b"data: late\n\n", "more_body": False})
    elif path == "/writer":  # pieces written through the scope's writer from another task, between send calls
        write = scope["extensions"][WRITE_NOW]
        refused = [write(b"data: early\n\n")]  # before the response started
        await send({"type": "http.response.start", "status": 200, "headers": sse})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})

        async def other_task() -> bool:
            return write(b"data: 2\n\n") and write(b"data: 3\n\n")

        assert await asyncio.create_task(other_task())
        await send({"type": "http.response.body", "body": b"data: 4\n\n", "more_body": False})
        refused.append(write(b"data: late\n\n"))  # the response is over
        WRITER_OUTCOMES.append(refused)
    elif path == "/writer-gone":  # the client leaves: the writer refuses from then on
        write = scope["extensions"][WRITE_NOW]
        await send({"type": "http.response.start", "status": 200, "headers": sse})
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass
        WRITER_OUTCOMES.append([write(b"data: 2\n\n")])
    elif path == "/broken":  # the head, then the app fails: uvicorn closes the connection
        await send({"type": "http.response.start", "status": 200, "headers": sse})
        raise RuntimeError("the app failed mid-response (expected by the test)")
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    number = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=number, http=RecordedProtocol, log_level="critical",
                            lifespan="off", access_log=False)
    server, thread = serve_in_thread(config, uvloop.run)
    yield number
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _read_until(sock: socket.socket, end: bytes, data: bytes = b"") -> bytes:
    while not data.endswith(end):
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before {end!r}: {data!r}"
        data += chunk
    return data


def test_memproxy_serves_with_this_protocol() -> None:
    assert http_protocol() is HttpProtocol


def test_a_head_leaves_in_the_same_write_as_the_first_chunk(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(_get("/stream"))
        data = _read_until(sock, b"0\r\n\r\n")
    writes = Recorder.made[-1].writes
    assert len(writes) == 2, writes  # uvicorn's own protocol: three, the head alone first
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"data: first\n\n\r\n")
    assert b"data: [DONE]" in writes[1] and data == b"".join(writes)


def test_a_head_whose_body_is_late_goes_out_alone_at_once(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(_get("/late"))
        sock.settimeout(HEAD_ONLY_WAIT_S * 0.6)
        first = sock.recv(65536)  # times out if the head waited for the body
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"\r\n\r\n")
        sock.settimeout(5)
        assert b"data: late" in _read_until(sock, b"0\r\n\r\n")


def test_a_head_held_when_the_connection_closes_is_sent_first(port: int) -> None:
    with _connect(port) as sock:
        sock.sendall(_get("/broken"))
        data = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\n")  # the head, whole, then the close


def test_plain_responses_keep_alive_and_bad_requests_still_get_their_answer(port: int) -> None:
    with _connect(port) as sock:
        for _ in range(3):
            sock.sendall(_get("/plain"))
            reply = _read_until(sock, b"\r\n\r\nok")
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 2" in reply
    with _connect(port) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = _read_all(sock)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_a_websocket_upgrade_works_through_the_holding_transport(port: int) -> None:
    # The upgrade hands the connection's transport (the one holding heads) to uvicorn's WebSocket protocol.
    with _connect(port) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        data = _read_until(sock, b"\x88\x02\x03\xe8")  # the close frame, code 1000
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), data
    assert data.endswith(b"\r\n\r\n\x81\x05hello\x88\x02\x03\xe8")  # the handshake, the text frame, the close


def test_the_scope_writer_puts_body_pieces_on_the_wire_in_order_only_while_the_response_streams(port: int) -> None:
    WRITER_OUTCOMES.clear()
    before = BodyWriter.written
    with _connect(port) as sock:
        sock.sendall(_get("/writer"))
        data = _read_until(sock, b"0\r\n\r\n")
    body = data.split(b"\r\n\r\n", 1)[1]
    pieces = [b"data: %d\n\n" % n for n in (1, 2, 3, 4)]
    assert body == b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    assert WRITER_OUTCOMES == [[False, False]]
    assert BodyWriter.written == before + 2


def test_the_scope_writer_refuses_once_the_client_is_gone(port: int) -> None:
    WRITER_OUTCOMES.clear()
    with _connect(port) as sock:
        sock.sendall(_get("/writer-gone"))
        assert b"data: 1" in _read_until(sock, b"data: 1\n\n\r\n")
    deadline = time.monotonic() + 5
    while not WRITER_OUTCOMES and time.monotonic() < deadline:
        time.sleep(0.01)
    assert WRITER_OUTCOMES == [[False]]
