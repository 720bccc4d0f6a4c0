"""The hot-path HTTP/1.1 client against real sockets: framing, keep-alive, stale connections, cuts, timeouts."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

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


async def _pieces_until(error: type[Exception], response: Any) -> list[bytes]:
    """The pieces a body gave before it failed with `error` (which it must)."""
    received = []
    with pytest.raises(error):
        async for piece in response.aiter_bytes():
            received.append(piece)
    return received


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
        assert await _pieces_until(StreamCut, await pool.post("/x", b"", {})) == [b"partial"]
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


async def _pieces_with_marks(pool: Http1Pool) -> list[tuple[bytes, bool]]:
    response = await pool.post("/x", b"", {})
    return [(piece, response.last_piece) async for piece in response.aiter_bytes()]


async def _one_arrival_and_spread_out() -> None:
    whole = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    answers = [whole + chunked(b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"), "spread"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = answers.pop(0)
        if isinstance(answer, bytes):
            await reply(writer, answer)  # head, three chunks and the terminator in one write
            return
        writer.write(whole)
        for piece in (b"data: 1\n\n", b"data: 2\n\n"):
            writer.write(chunked(piece)[:-5])
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")  # the end comes alone
        await writer.drain()

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        # Whatever arrives together comes out as one piece, marked as the body's last when it is.
        assert await _pieces_with_marks(pool) == [(b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n", True)]
        assert await _pieces_with_marks(pool) == [(b"data: 1\n\n", False), (b"data: 2\n\n", False)]
        assert server.connections == 1
        await pool.close()


async def test_what_arrives_together_is_one_piece_and_the_last_piece_is_marked() -> None:
    await _one_arrival_and_spread_out()


def test_the_same_on_uvloop_whose_transports_are_not_asyncios() -> None:
    uvloop = pytest.importorskip("uvloop")
    uvloop.run(_one_arrival_and_spread_out())


async def test_a_gzipped_body_is_inflated_and_never_marked_last() -> None:
    import gzip

    packed = gzip.compress(b"data: hello\n\ndata: [DONE]\n\n")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reply(writer, b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed),
                    packed)

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        marks = await _pieces_with_marks(pool)
        assert b"".join(piece for piece, _ in marks) == b"data: hello\n\ndata: [DONE]\n\n"
        assert not any(last for _, last in marks)  # the decoder's tail could follow any piece
        await pool.close()


async def test_a_slow_reader_holds_the_upstream_back() -> None:
    size = 24 << 20  # past what the kernel's socket buffers hold on loopback
    writers: list[asyncio.StreamWriter] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reply(writer, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size, b"x" * size)

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        response = await pool.post("/x", b"", {})
        await asyncio.sleep(0.3)  # not reading: the client stops taking bytes, so the server's buffer fills
        assert writers[0].transport.get_write_buffer_size() > 0
        assert len(await response.aread()) == size
        await pool.close()


async def test_the_read_timeout_is_silence_not_a_long_stream() -> None:
    steady = True

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(8 if steady else 1):
            writer.write(chunked(b"%d" % i)[:-5])
            await writer.drain()
            await asyncio.sleep(0.1)
        if not steady:
            await asyncio.sleep(5)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url, read_timeout=0.3)
        # 0.8 s in all, never more than 0.1 s without a byte: no timeout.
        assert await (await pool.post("/x", b"", {})).aread() == b"01234567"
        steady = False
        assert await _pieces_until(ReadTimeout, await pool.post("/x", b"", {})) == [b"0"]
        await pool.close()


async def test_a_malformed_answer_or_one_sent_unasked_is_not_kept() -> None:
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + b"surplus", b"NOT HTTP AT ALL\r\n\r\n"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reply(writer, answers.pop(0))

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        assert await (await pool.post("/x", b"", {})).aread() == b"ok"
        # The bytes after the answer came unasked: that connection is not reused.
        with pytest.raises(StreamCut, match="malformed"):
            await pool.post("/x", b"", {})
        assert server.connections == 2
        await pool.close()


async def test_a_relayed_answer_that_arrives_whole_goes_out_in_one_body_message() -> None:
    from proxy.relay import relay_response

    events = b"data: 1\n\ndata: [DONE]\n\n"
    answers = [b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nSet-Cookie: s=1\r\nTransfer-Encoding: chunked"
               b"\r\n\r\n" + chunked(events),
               b'HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 33\r\n\r\n'
               b'{"error":{"message":"slow down"}}']

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reply(writer, answers.pop(0))

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(10)  # the client never leaves
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with RawServer(handler) as server:
        pool = Http1Pool(server.url)
        answer = await relay_response(await pool.post("/x", b"", {}), {"Server-Timing": "memproxy;dur=0.1"})
        await answer({"type": "http"}, receive, send)
        start, *bodies = sent
        assert dict(start["headers"]) == {b"content-type": b"text/event-stream", b"server-timing": b"memproxy;dur=0.1"}
        assert [(m["body"], m["more_body"]) for m in bodies] == [(events, False)]  # no separate end of body
        error = await relay_response(await pool.post("/x", b"", {}), {"Server-Timing": "memproxy;dur=0.2"})
        assert (error.status_code, error.headers["server-timing"], error.headers["retry-after"]) == (
            429, "memproxy;dur=0.2", "3")
        assert server.connections == 1  # the relayed answer's connection went back to the pool
        await pool.close()
