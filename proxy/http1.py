"""A lean HTTP/1.1 keep-alive client for the one request on the hot path: the streamed chat call upstream.

httpx spends more CPU per request than the rest of a turn (cookie jars, auth and redirect layers,
an anyio hop on every read and write). This client does only what that call needs: a pool of
keep-alive connections to one origin, a POST with a known length, and a response parsed by
httptools (chunked or sized bodies) and streamed as it arrives. Everything else keeps using httpx.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Sequence
from typing import AsyncIterator, cast
from urllib.parse import urlsplit

import httptools

# Bodies from this size are written after their head, not copied onto it.
LARGE_BODY = 65536
# Reading from the upstream pauses while this much of a body waits for its reader (a slow client).
PAUSE_AT = 1 << 20


class ConnectFailed(Exception):
    """No connection could be made (nothing was sent)."""


class ConnectTimeout(ConnectFailed):
    """The connection was not made within the connect timeout."""


class ReadTimeout(Exception):
    """The upstream sent nothing for longer than the read timeout."""


class StreamCut(Exception):
    """The connection ended before the response did."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection, parsing what arrives as it arrives (httptools calls back here).

    A protocol rather than asyncio's streams: bytes go from the socket to the parser in the loop's own
    callback, and the reader is woken once per arrival, with no stream buffer, read future and timer per
    read in between. The read timeout is one timer per wait that re-arms itself while data keeps coming.
    """

    def __init__(self, read_timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None  # set while a response is being read
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()  # what arrived of the body and was not taken yet
        # httptools calls `on_body` once per chunk (an SSE event, usually): a C method, no Python frame.
        self.on_body = self.body.extend
        self.headers_done = False
        self.complete = False
        self.received = False  # any byte of the current response
        self.closed = False
        self.error: Exception | None = None  # a malformed response, or the read timeout
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0  # when the current wait began or data last came, whichever is later

    # Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # nothing was asked: a server talking out of turn cannot be reused
            self.close()
            return
        self.received = True
        self._since = self.loop.time()
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.complete:  # bytes after a whole answer only cost the connection its reuse
                self.error = StreamCut(f"malformed response: {exc}")
            self.close()
        if len(self.body) >= PAUSE_AT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self._wake()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_message_complete(self) -> None:
        self.complete = True

    # The reader's side

    def begin(self) -> None:
        """Ready for a new response."""
        self.headers = []
        self.body.clear()
        self.headers_done = self.complete = self.received = False
        self.parser = httptools.HttpResponseParser(self)

    def take_body(self) -> bytes:
        """What arrived of the body since the last call, as one piece (b"" if nothing)."""
        piece = bytes(self.body)
        self.body.clear()
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return piece

    async def wait(self) -> None:
        """Until something arrives or the connection ends; ReadTimeout after read_timeout of silence."""
        if self.error is not None:
            raise self.error
        if self.closed:
            return
        waiter = self._waiter = self.loop.create_future()
        self._since = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_later(self.read_timeout, self._check_silence)
        try:
            await waiter
        finally:
            self._waiter = None
        if self.error is not None:
            raise self.error

    def done_reading(self) -> None:
        """The response is read: no timer runs for a connection that waits in the pool."""
        self.parser = None
        self._stop_timer()

    def close(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_silence(self) -> None:
        self._timer = None
        if self._waiter is None:
            return  # nobody is waiting (the reader is busy): the next wait starts the clock again
        left = self._since + self.read_timeout - self.loop.time()
        if left > 0:
            self._timer = self.loop.call_later(left, self._check_silence)
            return
        self.error = ReadTimeout("the upstream sent nothing within the read timeout")
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Http1Response:
    """A response whose body has not been read yet."""

    def __init__(self, pool: Http1Pool, conn: _Connection) -> None:
        parser = conn.parser
        assert parser is not None  # the headers are in; the body is still to be read
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status_code = parser.get_status_code()
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in conn.headers}
        connection = self.headers.get("connection", "").lower()
        # httptools forgets keep-alive once the message completes, so decide it from the headers now.
        self._keep_alive = ("close" not in connection if parser.get_http_version() == "1.1"
                            else "keep-alive" in connection)
        # Neither a length nor chunks: the body runs until the server closes the connection.
        self._until_eof = (self.status_code not in (204, 304) and "content-length" not in self.headers
                           and "chunked" not in self.headers.get("transfer-encoding", "").lower())
        # Set as `aiter_bytes` hands out the body's last piece (uncompressed bodies): a relay can then send
        # that piece and the end of its own response in one write.
        self.last_piece = False

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body (de-chunked, and decompressed if the server gzipped it anyway) as it arrives."""
        encoding = self.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("gzip", "x-gzip", "deflate"):
            return self._raw_bytes()  # no generator in between: each piece costs one resumption less
        return self._inflated(encoding)

    async def _inflated(self, encoding: str) -> AsyncIterator[bytes]:
        # Some servers compress whatever the request's Accept-Encoding says; decode as httpx would.
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib framing, detected
        try:
            async for piece in self._raw_bytes(mark_last=False):  # the decoder's tail may follow
                out = decoder.decompress(piece)
                if out:
                    yield out
            tail = decoder.flush()
        except zlib.error as exc:
            raise StreamCut(f"the upstream's {encoding} body is corrupt: {exc}") from None
        if tail:
            yield tail

    async def _raw_bytes(self, mark_last: bool = True) -> AsyncIterator[bytes]:
        """The body (de-chunked) as it arrives, one piece per arrival; StreamCut if the connection ends first."""
        conn = self._conn
        if conn is None:
            raise StreamCut("response already closed")
        try:
            while True:
                if conn.body:
                    # One piece per arrival, however many chunks it held: a relay writes each piece on.
                    self.last_piece = mark_last and conn.complete
                    yield conn.take_body()
                if conn.complete:
                    self._release()
                    return
                if conn.closed:
                    if conn.error is not None:
                        raise conn.error
                    if self._until_eof:  # the close is the end of this body
                        self._conn = None
                        return
                    raise StreamCut("the upstream closed the connection mid-response")
                await conn.wait()
        finally:
            if self._conn is not None and not conn.complete:
                await self.aclose()

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.done_reading()
            if self._keep_alive:
                self._pool.give_back(conn)
            else:
                conn.close()

    async def aclose(self) -> None:
        """Stop early: a connection with an unread body cannot be reused."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class Http1Pool:
    """Keep-alive connections to one origin (`http://` or `https://`)."""

    def __init__(self, base_url: str, *, connect_timeout: float = 10.0, read_timeout: float = 120.0,
                 max_idle: int = 512, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported upstream URL {base_url!r}")
        self.host = parts.hostname
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.prefix = parts.path.rstrip("/")
        default_port = self.port == (443 if self.tls else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._ssl = (ssl_context or ssl.create_default_context()) if self.tls else None
        self._idle: deque[_Connection] = deque()

    async def post(self, path: str, body: bytes | Sequence[bytes | memoryview],
                   headers: dict[str, str]) -> Http1Response:
        """Send the request and return once the response headers are in; `body` may come as pieces (of bytes)."""
        pieces = (body,) if isinstance(body, bytes) else tuple(body)
        length = sum(len(piece) for piece in pieces)
        lines = [f"POST {self.prefix}{path} HTTP/1.1", f"Host: {self.host_header}", f"Content-Length: {length}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # A large body goes out as it is, behind its head (one vectored write): no copy of it in between.
        payload = (b"".join((head, *pieces)),) if length < LARGE_BODY else (head, *pieces)
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue  # the server closed it while it waited here
            response = await self._exchange(conn, payload, reused=True)
            if response is not None:
                return response
        conn = await self._connect()
        response = await self._exchange(conn, payload, reused=False)
        assert response is not None
        return response

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self.read_timeout), self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self.tls else None)
        except TimeoutError:
            raise ConnectTimeout("connecting to the upstream timed out") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailed(f"the upstream's TLS certificate was rejected: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"the TLS handshake with the upstream failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise ConnectFailed(f"could not connect to the upstream: {exc.strerror or type(exc).__name__}") from None
        return conn

    async def _exchange(self, conn: _Connection, payload: tuple[bytes | memoryview, ...], *,
                        reused: bool) -> Http1Response | None:
        """Send and read the headers; None when a pooled connection turned out to be closed (retry fresh)."""
        conn.begin()
        transport = conn.transport
        assert transport is not None
        try:
            if len(payload) == 1:
                transport.write(payload[0])
            else:
                transport.writelines(payload)
            while not conn.headers_done:
                if conn.closed and conn.error is None:
                    raise StreamCut("the upstream closed the connection before answering")
                await conn.wait()
        except StreamCut as exc:
            conn.close()
            if reused and not conn.received:
                return None  # the server had closed this idle connection; nothing reached it
            raise StreamCut(str(exc) or type(exc).__name__) from None
        except BaseException:
            conn.close()
            raise
        return Http1Response(self, conn)

    def give_back(self, conn: _Connection) -> None:
        if len(self._idle) < self.max_idle and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
