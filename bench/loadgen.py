"""The load generator: a raw asyncio HTTP/1.1 client that times SSE streams with minimal parsing.

Raw streams rather than httpx: on a 2-core machine the client shares the CPU with the simulator and
memproxy, so every microsecond it spends is a microsecond the servers lose. Connections are opened
up front and kept alive; each request records the client's own processing time so the summary can
say how much of the machine the client took.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

_CONTENT = b'"content":"'
_DONE = b"data: [DONE]"
_ERROR = b'"error":'
# Replaced in every request by a unique number of the same width: memproxy replays a repeated identical
# agent request (idempotent retries), so a benchmark must never send the same body twice.
NONCE = "@@nonce@@@"
_NONCE = NONCE.encode()
_serial = itertools.count()


@dataclass(slots=True)
class Result:
    """One streamed request as the client saw it; times in ms from the moment the request was written."""

    path: str
    status: int = 0
    ttft_ms: float | None = None
    e2e_ms: float = 0.0
    gaps_ms: list[float] = field(default_factory=list)  # between consecutive content events
    content_events: int = 0
    client_us: float = 0.0  # the client's own parsing time for this response
    error: str | None = None
    started: float = 0.0  # perf_counter at send
    tag: Any = None
    server_ms: float | None = None  # memproxy's own time before the upstream call, from its Server-Timing header

    @property
    def ok(self) -> bool:
        return self.error is None


def build_request(path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 POST, encoded once and reused for every send."""
    payload = orjson.dumps(body)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             "Accept: text/event-stream", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class Template:
    """A request encoded once; `render()` returns it with a fresh nonce (same length, so same Content-Length)."""

    __slots__ = ("raw",)

    def __init__(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.raw = build_request(path, body, headers)
        if _NONCE not in self.raw:
            raise ValueError("request template without a nonce")

    def render(self) -> bytes:
        return self.raw.replace(_NONCE, b"%010d" % next(_serial), 1)


def chat_body(model: str, text: str, *, stream: bool = True) -> dict[str, Any]:
    """A one-message streamed chat request whose text carries the nonce."""
    return {"model": model, "stream": stream, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"{text} [{NONCE}]"}]}


class Conn:
    """One kept-alive connection; reopened transparently after an error or a `Connection: close`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Conn:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        return self

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: Template | bytes, path: str, timeout: float = 60.0) -> Result:
        result = Result(path=path)
        if isinstance(request, Template):
            request = request.render()
        if self.writer is None:
            await self.open()
        try:
            async with asyncio.timeout(timeout):
                await self._exchange(request, result)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            result.error = result.error or f"{type(exc).__name__}: {exc}"
            self.close()
        return result

    async def _exchange(self, request: bytes, result: Result) -> None:
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        t0 = result.started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, _, header_block = head.partition(b"\r\n")
        result.status = int(status_line.split(b" ", 2)[1])
        headers = header_block.lower()
        result.server_ms = _server_timing(headers)
        chunked = b"transfer-encoding: chunked" in headers
        closing = b"connection: close" in headers
        if not chunked:
            length = _content_length(headers)
            body = await (reader.readexactly(length) if length is not None else reader.read())
            result.e2e_ms = (time.perf_counter() - t0) * 1000
            if result.status != 200:
                result.error = f"HTTP {result.status}: {body[:200]!r}"
            if closing or length is None:
                self.close()
            return
        raw, sse = b"", b""
        last_event: float | None = None
        finished = done = False
        while not finished:
            data = await reader.read(65536)
            now = time.perf_counter()
            if not data:
                raise ConnectionError("connection closed mid-stream")
            raw += data
            while True:  # de-chunk whatever is complete
                eol = raw.find(b"\r\n")
                if eol < 0:
                    break
                size = int(raw[:eol].split(b";", 1)[0], 16)
                if size == 0:
                    finished = True
                    break
                if len(raw) < eol + size + 4:
                    break
                sse += raw[eol + 2:eol + 2 + size]
                raw = raw[eol + size + 4:]
            if b"\n\n" in sse:
                events = sse.split(b"\n\n")
                sse = events.pop()
                for event in events:
                    if event.startswith(b"id:"):  # a resumable run's numbered event
                        event = event[event.find(b"\n") + 1:]
                    at = event.find(_CONTENT)
                    if at >= 0 and event[at + len(_CONTENT):at + len(_CONTENT) + 1] != b'"':
                        if result.ttft_ms is None:
                            result.ttft_ms = (now - t0) * 1000
                        else:
                            result.gaps_ms.append((now - last_event) * 1000)  # type: ignore[operator]
                        last_event = now
                        result.content_events += 1
                    elif event.startswith(_DONE):
                        done = True
                    elif _ERROR in event and result.error is None:
                        result.error = "stream error event: " + event[:200].decode(errors="replace")
            result.client_us += (time.perf_counter() - now) * 1e6
        result.e2e_ms = (time.perf_counter() - t0) * 1000
        if result.status != 200 and result.error is None:
            result.error = f"HTTP {result.status}"
        elif not done and result.error is None:
            result.error = "stream ended without [DONE]"
        if closing:
            self.close()


def _server_timing(headers: bytes) -> float | None:
    """`memproxy;dur=X` of a Server-Timing header (lower-cased header block), if memproxy sent one."""
    at = headers.find(b"memproxy;dur=")
    if at < 0:
        return None
    end = at + 13
    while end < len(headers) and headers[end:end + 1] in b"0123456789.":
        end += 1
    return float(headers[at + 13:end])


def _content_length(headers: bytes) -> int | None:
    at = headers.find(b"content-length:")
    if at < 0:
        return None
    end = headers.find(b"\r\n", at)
    return int(headers[at + 15:end if end >= 0 else None].strip())


async def open_conns(port: int, n: int) -> list[Conn]:
    """Open `n` connections up front so no measured request pays for a TCP handshake."""
    return list(await asyncio.gather(*(Conn(port).open() for _ in range(n))))


def close_all(*groups: list[Conn]) -> None:
    for group in groups:
        for conn in group:
            conn.close()


async def warm(conns: list[Conn], request: Template, rounds: int = 2) -> None:
    """Send a few throw-away requests on every connection (server-side caches, JIT-less warm paths)."""
    for _ in range(rounds):
        await asyncio.gather(*(conn.send(request, "warmup") for conn in conns))
