"""The hot-path HTTP/1.1 client against real sockets: framing, keep-alive, stale connections, cuts, timeouts."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import pytest

from proxy.http1 import ConnectFailed, Http1Pool, ReadTimeout, StreamCut
from proxy.upstream import Upstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server answering each request with whatever bytes the test scripts."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length"))
                self.requests.append(head + await reader.readexactly(length))
                await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def reply(writer: asyncio.StreamWriter, head: bytes, body: bytes = b"") -> None:
    writer.write(head + body)
    await writer.drain()


async def test_chunked_stream_arrives_in_pieces_and_the_connection_is_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(chunked(piece)[:-5])  # one chunk, not yet the terminator
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        for _ in range(3):
            response = await pool.post("/chat/completions", b'{"a":1}', {"Content-Type": "application/json"})
            assert response.status_code == 200 and response.headers["content-type"] == "text/event-stream"
            pieces = [p async for p in response.aiter_bytes()]
            assert b"".join(pieces) == b"data: 1\n\ndata: 2\n\n" and len(pieces) == 2
        assert server.connections == 1
        assert server.requests[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"Content-Length: 7\r\n" in server.requests[0] and server.requests[0].endswith(b'{"a":1}')
        await pool.close()


async def test_event_lines_split_across_reads_or_ended_by_crlf_parse_whole() -> None:
    events = [b'{"choices":[{"delta":{"content":"a b"}}]}', b'{"choices":[{"delta":{"content":" c"}}]}',
              b'{"choices":[{"delta":{},"finish_reason":"stop"}]}']
    body = (b"data: " + events[0] + b"\r\n\r\n: comment\n\ndata:" + events[1] + b"\n\n"
            + b"data: " + events[2] + b"\n\ndata: [DONE]")  # the last line has no newline at all
    cuts = [0, 7, 30, 31, len(body) - 3, len(body)]  # mid-prefix, mid-JSON, between \r and \n, mid-[DONE]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start, end in zip(cuts, cuts[1:]):
            writer.write(chunked(body[start:end])[:-5])
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        upstream = Upstream(server.url, None)
        chunks = [chunk async for chunk in upstream.stream_chat({"model": "m", "messages": []})]
        assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["a b", " c", None]
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        await upstream.close()


async def test_sized_body_close_header_and_body_until_eof() -> None:
    answers = [b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 5\r\n\r\nslow!",
               b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
               b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = answers.pop(0)
        await reply(writer, answer)
        if b"Content-Length" not in answer or b"close" in answer:
            writer.close()

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        limited = await pool.post("/x", b"", {})
        assert (limited.status_code, limited.headers["retry-after"], await limited.aread()) == (429, "2", b"slow!")
        closing = await pool.post("/x", b"", {})
        assert await closing.aread() == b"ok"
        eof = await pool.post("/x", b"", {})
        assert await eof.aread() == b"until the end"
        assert server.connections == 2  # the close header ended the first connection's reuse
        await pool.close()


async def test_a_body_in_pieces_arrives_whole_small_or_large_and_through_httpx_too() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reply(writer, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 14\r\n\r\n"
                    b"data: [DONE]\n\n")

    history = bytearray(b",".join(b'{"role":"user","content":"%d"}' % i for i in range(5_000)))
    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        for kept in (history[:40], history):  # under and over the size written behind the head
            pieces = [b'{"messages":[', memoryview(kept).toreadonly(), b"]}"]
            assert await (await pool.post("/chat/completions", pieces, {})).aread() == b"data: [DONE]\n\n"
            head, body = server.requests[-1].split(b"\r\n\r\n", 1)
            assert body == b'{"messages":[' + kept + b"]}" and f"Content-Length: {len(body)}".encode() in head
        await pool.close()
        upstream = Upstream(server.url, None)
        upstream.fast = None  # as with a proxy configured: httpx sends it
        assert [chunk async for chunk in upstream.stream_chat(pieces)] == []
        assert server.requests[-1].endswith(b'{"messages":[' + history + b"]}")
        await upstream.close()


async def test_a_pooled_connection_the_server_closed_is_replaced_transparently() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reply(writer, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        writer.close()  # an idle timeout on the server side, without telling the client

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        assert await (await pool.post("/x", b"", {})).aread() == b"ok"
        await asyncio.sleep(0.05)
        assert await (await pool.post("/x", b"", {})).aread() == b"ok"
        assert server.connections == 2 and len(server.requests) == 2
        await pool.close()


async def test_a_response_cut_mid_body_is_a_stream_cut() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reply(writer, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"partial")[:-5])
        writer.transport.abort()

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        response = await pool.post("/x", b"", {})
        received = []
        with pytest.raises(StreamCut):
            async for piece in response.aiter_bytes():
                received.append(piece)
        assert received == [b"partial"]
        await pool.close()


async def test_silence_past_the_read_timeout_and_refused_connections() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url, read_timeout=0.2)
        with pytest.raises(ReadTimeout):
            await pool.post("/x", b"", {})
        await pool.close()
    closed_port = Http1Pool(server.url)  # the server is gone now
    with pytest.raises(ConnectFailed):
        await closed_port.post("/x", b"", {})


def test_only_http_origins() -> None:
    with pytest.raises(ValueError):
        Http1Pool("ftp://example.com/v1")
    pool = Http1Pool("https://api.example.com/v1")
    assert (pool.tls, pool.port, pool.host_header, pool.prefix) == (True, 443, "api.example.com", "/v1")
