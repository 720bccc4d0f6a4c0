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
from typing import AsyncIterator
from urllib.parse import urlsplit

import httptools

READ_SIZE = 65536
# Bodies from this size are written after their head, not copied onto it.
LARGE_BODY = 65536


class ConnectFailed(Exception):
    """No connection could be made (nothing was sent)."""


class ConnectTimeout(ConnectFailed):
    """The connection was not made within the connect timeout."""


class ReadTimeout(Exception):
    """The upstream sent nothing for longer than the read timeout."""


class StreamCut(Exception):
    """The connection ended before the response did."""


class _Parsed:
    """httptools callbacks for one response."""

    __slots__ = ("headers", "body", "headers_done", "complete")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.headers_done = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    __slots__ = ("reader", "writer", "loop")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()

    def close(self) -> None:
        self.writer.transport.abort()

    def time_out(self) -> None:
        """A read waited the whole read timeout: it raises ReadTimeout (so would any read after it)."""
        self.reader.set_exception(ReadTimeout("the upstream sent nothing within the read timeout"))


class Http1Response:
    """A response whose body has not been read yet."""

    def __init__(self, pool: Http1Pool, conn: _Connection, parser: httptools.HttpResponseParser,
                 parsed: _Parsed) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._parser = parser
        self._parsed = parsed
        self.status_code = parser.get_status_code()
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in parsed.headers}
        connection = self.headers.get("connection", "").lower()
        # httptools forgets keep-alive once the message completes, so decide it from the headers now.
        self._keep_alive = ("close" not in connection if parser.get_http_version() == "1.1"
                            else "keep-alive" in connection)
        # Neither a length nor chunks: the body runs until the server closes the connection.
        self._until_eof = (self.status_code not in (204, 304) and "content-length" not in self.headers
                           and "chunked" not in self.headers.get("transfer-encoding", "").lower())

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
            async for piece in self._raw_bytes():
                out = decoder.decompress(piece)
                if out:
                    yield out
            tail = decoder.flush()
        except zlib.error as exc:
            raise StreamCut(f"the upstream's {encoding} body is corrupt: {exc}") from None
        if tail:
            yield tail

    async def _raw_bytes(self) -> AsyncIterator[bytes]:
        """The body (de-chunked) as it arrives; StreamCut if the connection ends first."""
        parsed = self._parsed
        try:
            while True:
                if parsed.body:
                    pieces, parsed.body = parsed.body, []
                    for piece in pieces:
                        yield piece
                if parsed.complete:
                    self._release()
                    return
                conn = self._conn
                if conn is None:
                    raise StreamCut("response already closed")
                data = await self._pool.read(conn)
                if not data:
                    if self._until_eof:
                        parsed.complete = True
                        self._conn = None
                        conn.close()
                        return
                    raise StreamCut("the upstream closed the connection mid-response")
                try:
                    self._parser.feed_data(data)
                except httptools.HttpParserError as exc:
                    raise StreamCut(f"malformed response: {exc}") from None
        finally:
            if self._conn is not None and not parsed.complete:
                await self.aclose()

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_bytes()])

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
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
            response = await self._exchange(conn, payload, reused=True)
            if response is not None:
                return response
        conn = await self._connect()
        response = await self._exchange(conn, payload, reused=False)
        assert response is not None
        return response

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self._ssl, server_hostname=self.host if self.tls else None,
                    limit=READ_SIZE)
        except TimeoutError:
            raise ConnectTimeout("connecting to the upstream timed out") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailed(f"the upstream's TLS certificate was rejected: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"the TLS handshake with the upstream failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise ConnectFailed(f"could not connect to the upstream: {exc.strerror or type(exc).__name__}") from None
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, payload: tuple[bytes | memoryview, ...], *,
                        reused: bool) -> Http1Response | None:
        """Send and read the headers; None when a pooled connection turned out to be closed (retry fresh)."""
        parsed = _Parsed()
        parser = httptools.HttpResponseParser(parsed)
        received = False
        try:
            conn.writer.writelines(payload)
            while not parsed.headers_done:
                data = await self.read(conn)
                if not data:
                    raise StreamCut("the upstream closed the connection before answering")
                received = True
                parser.feed_data(data)
        except (StreamCut, ConnectionError, httptools.HttpParserError) as exc:
            conn.close()
            if reused and not received:
                return None  # the server had closed this idle connection; nothing reached it
            if isinstance(exc, httptools.HttpParserError):
                raise StreamCut(f"malformed response: {exc}") from None
            raise StreamCut(str(exc) or type(exc).__name__) from None
        except BaseException:
            conn.close()
            raise
        return Http1Response(self, conn, parser, parsed)

    async def read(self, conn: _Connection) -> bytes:
        # A timer that fails the reader, not asyncio.timeout: 1 us per read instead of 3 (no Timeout object,
        # no cancel-to-TimeoutError round trip). Data racing the timer at the deadline may still be returned;
        # the connection's next read then fails as timed out.
        timer = conn.loop.call_later(self.read_timeout, conn.time_out)
        try:
            return await conn.reader.read(READ_SIZE)
        except ReadTimeout:
            conn.close()
            raise
        except ConnectionError:
            conn.close()
            return b""
        finally:
            timer.cancel()

    def give_back(self, conn: _Connection) -> None:
        if len(self._idle) < self.max_idle and not conn.writer.transport.is_closing():
            self._idle.append(conn)
        else:
            conn.close()

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
