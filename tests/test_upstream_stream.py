"""How `Upstream.stream_chat` reads an event stream that arrives in one piece, from a real socket server."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from bench.relay_cost import Upstream as OneWriteServer, streamed_answer
from proxy.upstream import Upstream, UpstreamError


def event(payload: Any) -> bytes:
    return b"data: " + (payload if isinstance(payload, bytes) else orjson.dumps(payload)) + b"\n\n"


async def read(answer: bytes) -> tuple[list[dict[str, Any]], BaseException | None]:
    """The chunks `stream_chat` yields for `answer` (whole, written at once), and what it raised after them."""
    server = await asyncio.get_running_loop().create_server(lambda: OneWriteServer([0], answer), "127.0.0.1", 0)
    upstream = Upstream(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", None, timeout=5)
    got: list[dict[str, Any]] = []
    raised: BaseException | None = None
    try:
        async for chunk in upstream.stream_chat({"model": "m", "stream": True, "messages": []}):
            got.append(chunk)
    except UpstreamError as exc:
        raised = exc
    finally:
        await upstream.close()
        server.close()
    return got, raised


def text(i: int) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": f"t{i}"}, "finish_reason": None}]}


async def test_chunks_before_an_error_in_the_same_piece_are_yielded_then_it_is_raised() -> None:
    failed = {"choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
              "error": {"code": 503, "message": "provider went away"}}
    got, raised = await read(streamed_answer([event(text(0)), event(text(1)), event(failed), event(text(2))]))
    assert got == [text(0), text(1)]  # what came before the error reached the turn, nothing after it
    assert isinstance(raised, UpstreamError) and raised.status == 503 and "provider went away" in raised.message


async def test_a_whole_answer_in_one_piece_keeps_every_chunk_and_ignores_what_follows_done() -> None:
    done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    body = [b": keep-alive comment\n\n", event(text(0)), b"data:" + orjson.dumps(text(1)) + b"\r\n\r\n",
            event(b"not json"), event([1, 2]), event(done), event(b"[DONE]"), event(text(9))]
    got, raised = await read(streamed_answer(body))
    assert got == [text(0), text(1), done] and raised is None


@pytest.mark.parametrize("tail", [b"", b"data: " + orjson.dumps(text(1))])  # the last line may lack its newline
async def test_a_stream_that_ends_without_finishing_is_cut(tail: bytes) -> None:
    got, raised = await read(streamed_answer([event(text(0)), *([tail] if tail else [])]))
    assert got == [text(0), *([text(1)] if tail else [])]
    assert isinstance(raised, UpstreamError) and raised.code == "upstream_stream_cut"
