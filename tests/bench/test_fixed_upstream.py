"""`bench.fixed_upstream` answers every chat request the same, as a real process: what turncost measures against."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import openai
import orjson

from bench.procs import start_fixed_upstream
from bench.relay_cost import REPLY_PIECES

REPLY = "".join(REPLY_PIECES)


def _request(body: bytes, delay_ms: float | None = None, path: bytes = b"/v1/chat/completions",
             pace_ms: float | None = None) -> bytes:
    extra = b"" if delay_ms is None else b"X-Sim-Ttft-Ms: %d\r\n" % delay_ms
    extra += b"" if pace_ms is None else b"X-Sim-Token-Delay-Ms: %d\r\n" % pace_ms
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (path, len(body), extra, body))


def _read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """`count` whole answers off a kept-alive connection (chunked bodies end with a zero chunk)."""
    data = b""
    while data.count(b"0\r\n\r\n") < count:  # a chunked body's end, or an empty body's head
        piece = sock.recv(65536)
        assert piece, "the upstream closed the connection"
        data += piece
    return data.split(b"HTTP/1.1 ")[1:]


def test_fixed_upstream_answers_any_body_with_the_fixed_reply(tmp_path: Path) -> None:
    upstream = start_fixed_upstream(tmp_path)  # waits for GET /sim/health to answer 200
    try:
        client = openai.OpenAI(base_url=upstream.base + "/v1", api_key="none")
        long_history = [{"role": "user", "content": f"message {i} " * 20} for i in range(300)]
        stream = client.chat.completions.create(  # type: ignore[call-overload]
            model="any", messages=long_history, stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        [usage] = [c.usage for c in chunks if c.usage is not None]
        body = orjson.dumps({"model": "any", "messages": long_history})
        # A prompt token per four bytes of body: it grows with the history, and nothing was parsed to say so
        assert usage.prompt_tokens >= len(body) // 4 > 10_000 and usage.completion_tokens == 24

        assert httpx.post(upstream.base + "/v1/embeddings", json={}).status_code == 404
    finally:
        upstream.stop()


def test_requests_on_one_connection_are_answered_in_order_after_their_delay(tmp_path: Path) -> None:
    upstream = start_fixed_upstream(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", upstream.port), timeout=10) as sock:
            small, large = b'{"messages":[]}', b'{"messages":[' + b'{"role":"user","content":"x"},' * 5000 + b'{}]}'
            t0 = time.monotonic()
            # Three requests in one write: the first waits 150 ms, and the others are not answered before it
            sock.sendall(_request(small, delay_ms=150) + _request(large) + _request(small, path=b"/v1/other"))
            first, second, third = _read_answers(sock, 3)
            assert time.monotonic() - t0 >= 0.15
        assert first.startswith(b"200 OK") and second.startswith(b"200 OK") and third.startswith(b"404")
        assert b'"prompt_tokens":%d' % (len(small) // 4) in first
        assert b'"prompt_tokens":%d' % (len(large) // 4) in second
    finally:
        upstream.stop()


def test_a_paced_answer_comes_a_token_delay_apart_and_the_next_request_waits_for_its_end(tmp_path: Path) -> None:
    upstream = start_fixed_upstream(tmp_path)
    try:
        client = openai.OpenAI(base_url=upstream.base + "/v1", api_key="none")
        stream = client.chat.completions.create(  # type: ignore[call-overload]
            model="any", messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_headers={"X-Sim-Token-Delay-Ms": "10"})
        arrivals = [(time.monotonic(), c) for c in stream]
        pieces = [(t, c.choices[0].delta.content) for t, c in arrivals if c.choices and c.choices[0].delta.content]
        assert "".join(p for _, p in pieces) == REPLY and len(pieces) == 12
        # Timers set the pace: eleven delays of 10 ms at least between the first piece and the last.
        assert pieces[-1][0] - pieces[0][0] >= 0.11
        with socket.create_connection(("127.0.0.1", upstream.port), timeout=10) as sock:
            body = b'{"messages":[]}'
            sock.sendall(_request(body, pace_ms=10) + _request(body))
            first, second = _read_answers(sock, 2)
        assert first.count(b"data: ") == second.count(b"data: ") == 16  # role, 12 pieces, finish, usage, [DONE]
        assert first.endswith(b"0\r\n\r\n") and second.startswith(b"200 OK")
    finally:
        upstream.stop()
