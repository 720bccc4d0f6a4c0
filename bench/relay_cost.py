"""`python -m bench.relay_cost`: the CPU of one passthrough request through the whole app, in process.

The real app (`build_app`, its lifespan, DuckDB and all) serves `/v1/chat/completions` for a non-agent model,
called as ASGI directly on uvloop, and relays from an upstream in the same process that answers every
request at once with a fixed streamed answer (13 chunks of an SSE stream, as the simulator sends). The server
(uvicorn, httptools) and the kernel's loopback are left out, and so is any sleeping: the loop is never idle,
so this machine's penalty for waking up does not blur a before/after. Run it on two checkouts with
`PYTHONPATH` pointing at each (from outside both, so neither is the current directory) to compare them.
Best of `--rounds` rounds of `--requests` requests: microseconds of process CPU per request (the upstream's
share included, the same in both).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from typing import Any, AsyncIterator, MutableMapping

import uvloop

EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"hi there"}}]}\n\n'
CLIENT_HEADERS = [(b"accept", b"text/event-stream"), (b"user-agent", b"OpenAI/Python 1.0")]
BODY = b'{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hello"}]}'
# An agent's short reply in the 12 pieces an upstream streams it in (bench.turn_cost, bench.fixed_upstream)
_WORDS = "Sure, Lyon in April sounds lovely; Kyoto has great vegetarian places near the river too.".split()
REPLY_PIECES = [" ".join(_WORDS[i:i + 2]) + " " for i in range(0, 24, 2)]


def streamed_answer(events: list[bytes]) -> bytes:
    """An HTTP/1.1 200 answer carrying `events` as a chunked SSE body, one chunk per event."""
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n")


ANSWER = streamed_answer([EVENT] * 12 + [b"data: [DONE]\n\n"])


class Upstream(asyncio.Protocol):
    """Answers each whole request (head and Content-Length body) with `answer` on a kept-alive connection."""

    def __init__(self, counter: list[int], answer: bytes = ANSWER) -> None:
        self.counter = counter
        self.answer = answer
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.counter[0] += 1
            self.transport.write(self.answer)


async def call(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """POST `body` to the app's /v1/chat/completions as a server would; returns the bytes of the answer's body.

    The client stays until the answer is over (its `receive` waits), as a server reports a connection alive.
    """
    from bench.asgi_cost import chat_scope

    done = asyncio.Event()
    asked = False
    size = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal size
        if message["type"] == "http.response.body":
            size += len(message["body"])
            if not message.get("more_body"):
                done.set()
        elif message["status"] != 200:
            raise RuntimeError(f"the app answered {message['status']}")

    await app(chat_scope(body, headers), receive, send)
    return size


@contextlib.asynccontextmanager
async def running_app(answer: bytes = ANSWER, prefix: str = "memproxy-bench-") -> AsyncIterator[tuple[Any, list[int]]]:
    """The whole app, its lifespan entered, on a fresh data dir, relaying to an `Upstream` answering `answer`.

    Yields the app and the upstream's request counter; everything is closed and removed on the way out.
    """
    from proxy.app import build_app
    from proxy.config import Settings

    counter = [0]
    server = await asyncio.get_running_loop().create_server(lambda: Upstream(counter, answer), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as data_dir:
            settings = Settings.load({"data_dir": data_dir, "upstream_url": f"http://127.0.0.1:{port}/v1"},
                                     environ={})
            app = build_app(settings)
            async with app.router.lifespan_context(app):
                yield app, counter
    finally:
        server.close()


async def measure(requests: int, rounds: int) -> dict[str, Any]:
    relayed: list[int] = []
    async with running_app(prefix="memproxy-relay-cost-") as (app, counter):

        async def one() -> None:
            relayed.append(await call(app, BODY, CLIENT_HEADERS))

        for _ in range(min(requests, 500)):  # warm-up: the upstream connection, caches
            await one()
        per_round = []
        for _ in range(rounds):
            t0 = time.process_time()
            for _ in range(requests):
                await one()
            per_round.append((time.process_time() - t0) / requests * 1e6)
    return {"cpu_us_per_request": min(per_round), "rounds_us": per_round, "upstream_requests": counter[0],
            "relayed_bytes": sorted(set(relayed))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.relay_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; the best is reported (default 7)")
    args = parser.parse_args(argv)
    figures = uvloop.run(measure(args.requests, args.rounds))
    print(f"passthrough through the whole app, in process: {figures['cpu_us_per_request']:.1f} us of CPU per request "
          f"(best of {args.rounds} rounds of {args.requests}; rounds {', '.join(f'{r:.1f}' for r in figures['rounds_us'])})")


if __name__ == "__main__":
    main()
