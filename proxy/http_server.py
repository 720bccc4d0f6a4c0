"""uvicorn's httptools protocol, with fewer system calls and wake-ups per streamed response.

- A response's head goes out in the same system call as what follows it. uvicorn writes a response's status
  line and headers on their own as soon as the app sends `http.response.start`, and uvloop writes each
  `transport.write` at once: a streamed chat response cost a system call (and, on the client's side, a wake-up)
  for its head alone, right before its first chunk. Here the head waits, at most until the end of the event
  loop's pass, for the next write of the connection and goes out with it in one `writev`; a response whose body
  is not ready in that pass sends its head alone, as before.
- A streamed body can be written from another task than the one sending the response (`BodyWriter`, in the
  request's scope): an agent's turn puts each token on the wire as it reads it, instead of handing it to the
  responding task, which cost the event loop one more pass (and a system call to poll) per token.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from proxy.asgi_stream import WRITE_NOW


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


class BodyWriter:
    """Writes a piece of a streamed (chunked) response body at once, from outside the app's `send`.

    A task other than the one sending the response (the agent's turn, as a token arrives) can put it on the wire
    in the same pass of the event loop, instead of waking the responding task for it. It refuses (False) whenever
    `send` would not write at once: the response not started or over, not chunked, the client gone, or the
    transport's buffer above its high-water mark (then `send` waits for it to drain). It holds the request's
    cycle weakly: the cycle's scope holds it.
    """

    __slots__ = ("_cycle",)
    written = 0  # pieces written so far, by every writer of the process

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = weakref.ref(cycle)

    def __call__(self, body: bytes) -> bool:
        cycle = self._cycle()
        if (cycle is None or not cycle.response_started or cycle.response_complete or cycle.disconnected
                or not cycle.chunked_encoding or cycle.flow.write_paused or not body):
            return False
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        BodyWriter.written += 1
        return True


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `HeadWithBody` transport (passed to uvicorn as `http=`); each request's
    scope carries a `BodyWriter` under `extensions[WRITE_NOW]`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = HeadWithBody(transport, self.loop)  # type: ignore[assignment]

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not before and cycle is not None:
            extensions = cycle.scope.setdefault("extensions", {})  # type: ignore[typeddict-item]
            extensions[WRITE_NOW] = BodyWriter(cycle)  # type: ignore[assignment]
