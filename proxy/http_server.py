"""uvicorn's httptools protocol, with a response's head sent in the same system call as what follows it.

uvicorn writes a response's status line and headers on their own as soon as the app sends
`http.response.start`, and uvloop writes each `transport.write` at once: a streamed chat response cost a
system call (and, on the client's side, a wake-up) for its head alone, right before its first chunk. Here the
head waits, at most until the end of the event loop's pass, for the next write of the connection and goes out
with it in one `writev`; a response whose body is not ready in that pass sends its head alone, as before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadWithBody:
    """A connection's transport that holds a response head (a write starting `HTTP/`) for the write after it.

    Every other call passes straight through. Order is kept: a held head goes out before, or with, any later
    write, and before the transport closes.
    """

    __slots__ = ("transport", "_loop", "_held", "_flush")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
            self.transport.writelines((held, data))  # one writev with uvloop
            return
        if data[:5] == b"HTTP/" and not self.transport.is_closing():
            self._held = data
            self._flush = self._loop.call_soon(self.flush)
            return
        self.transport.write(data)

    def flush(self) -> None:
        """Send a held head now (the end of the pass it was written in, or a close)."""
        self._flush = None
        held, self._held = self._held, None
        if held is not None and not self.transport.is_closing():
            self.transport.write(held)

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `HeadWithBody` transport (passed to uvicorn as `http=`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = HeadWithBody(transport, self.loop)  # type: ignore[assignment]
