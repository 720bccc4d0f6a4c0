"""`python -m bench.fixed_upstream --port N`: an upstream whose cost does not depend on the request.

The simulator reads every request: it parses the JSON body, estimates the prompt's tokens by walking every
message, keeps a record. At 5,000 messages in context that is 4-5 ms of CPU per request, on the same two
cores as the memproxy under test, and grows with the history, so a comparison of memproxy's cost at 50 and
5,000 messages measured against it also measures the simulator's. This server takes a request's bytes
without looking into the body and answers every chat request with one fixed streamed reply (role, 12
content pieces, finish, usage, `[DONE]`, in one write), after `X-Sim-Ttft-Ms` milliseconds when the request
names it; with `X-Sim-Token-Delay-Ms`, each piece after the first follows the one before by that long (an
upstream's pace, for measuring the gaps a client sees, without the simulator's own stalls). Usage counts a
prompt token per four bytes of body, so calibration sees a prompt that grows with the history without
anything being parsed. `GET /sim/health` answers 200, as the simulator's does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.relay_cost import REPLY_PIECES, streamed_answer
from proxy.sim.sse import DONE, ChunkEncoder

END = b"0\r\n\r\n"  # the chunked body's end
HEAD = streamed_answer([])[:-len(END)]  # a streamed answer's status line and headers
HEALTH = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def _body(events: list[bytes]) -> bytes:
    """`events` as chunks of a chunked body, without the head or the end."""
    return streamed_answer(events)[len(HEAD):-len(END)]


class Reply:
    """The fixed answer's events, encoded once; only the usage event is built per request (its prompt size)."""

    def __init__(self) -> None:
        self.encoder = ChunkEncoder("chatcmpl-fixed", 1_700_000_000, "fixed-model", include_usage=True)
        self.events = [self.encoder.role(), *(self.encoder.content(p) for p in REPLY_PIECES),
                       self.encoder.finish("stop")]

    def answer(self, body_bytes: int) -> bytes:
        return streamed_answer(self._all(body_bytes))

    def paced(self, body_bytes: int) -> list[bytes]:
        """The answer in writes a token apart: head, role and first piece; each next piece; the last with the end."""
        events = self._all(body_bytes)
        return [HEAD + _body(events[:2]), *(_body([e]) for e in events[2:-3]), _body(events[-3:]) + END]

    def _all(self, body_bytes: int) -> list[bytes]:
        return [*self.events, self.encoder.usage(max(1, body_bytes // 4), 24), DONE]


class FixedUpstream(asyncio.Protocol):
    """One connection: requests in order (head, then Content-Length bytes of body), one answer each."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.buffer = bytearray()
        self.waiting = False  # an answer is scheduled; parse nothing more until it is written
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        while not self.waiting and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            fields = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip()
            length = int(fields.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            method, path = lines[0].split(b" ")[:2]
            if method == b"GET" and path.startswith(b"/sim/health"):
                self.transport.write(HEALTH)
                continue
            if method != b"POST" or not path.endswith(b"/chat/completions"):
                self.transport.write(NOT_FOUND)
                continue
            delay = float(fields.get(b"x-sim-ttft-ms", b"0") or 0) / 1000
            pace = float(fields.get(b"x-sim-token-delay-ms", b"0") or 0) / 1000
            writes = self.reply.paced(length) if pace > 0 else [self.reply.answer(length)]
            if delay <= 0 and len(writes) == 1:
                self.transport.write(writes[0])
                continue
            self.waiting = True
            _at_least(delay, self._answer, writes, pace)

    def _answer(self, writes: list[bytes], pace: float) -> None:
        """Write the next piece of an answer; the next request is read once its last piece is out."""
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(writes.pop(0))
        if writes:
            _at_least(pace, self._answer, writes, pace)
            return
        self.waiting = False
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _at_least(delay: float, callback: Callable[..., None], *args: Any) -> None:
    """Call `callback(*args)` no sooner than `delay` seconds from now. uvloop's timers count from the loop's
    cached clock in whole milliseconds, so `call_later` alone can fire a fraction of a millisecond early."""
    due = time.monotonic() + delay

    def fire() -> None:
        left = due - time.monotonic()
        if left > 0:
            asyncio.get_running_loop().call_later(left, fire)
        else:
            callback(*args)

    asyncio.get_running_loop().call_later(delay, fire)


async def serve(port: int) -> None:
    reply = Reply()
    server = await asyncio.get_running_loop().create_server(lambda: FixedUpstream(reply), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fixed_upstream", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvloop

    try:
        uvloop.run(serve(args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
