"""A fake provider: a real HTTP server that answers in the dialect the request's `model` names."""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from typing import Any, AsyncIterator, Iterator

import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dialects import DIALECTS, PROVIDER_HEADERS, completion_body
from helpers import free_port


class FakeProvider:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]),
                                Route("/v1/models", self.models, methods=["GET"]),
                                Route("/v1/{rest:path}", self.echo, methods=["GET", "POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        transport = TRANSPORT_FAULTS.get(body.get("model"))
        if transport is not None:
            return transport(body)
        dialect = DIALECTS.get(str(body.get("model", "")).rsplit("/", 1)[-1])
        if dialect is None:
            return JSONResponse({"error": {"message": "unknown model", "type": "invalid_request_error"}}, 404)
        if not body.get("stream"):
            return JSONResponse(completion_body(dialect))
        stream = dialect.stream
        if body.get("tool_choice") == "required":
            stream = _forced_call(body)  # like a real model, a forced step answers with a tool call

        async def events() -> AsyncIterator[bytes]:
            for item in stream:
                yield (item.encode() + b"\n\n") if isinstance(item, str) else b"data: " + orjson.dumps(item) + b"\n\n"
                await asyncio.sleep(0)
            if dialect.done:
                yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def echo(self, request: Request) -> Response:
        """Any other endpoint: what arrived, with the headers a real provider adds (most must not be relayed)."""
        raw = await request.body()
        answer = {"object": "echo", "method": request.method, "path": request.url.path,
                  "body": orjson.loads(raw) if raw else None}
        return JSONResponse(answer, headers=PROVIDER_HEADERS)

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": name, "object": "model"} for name in DIALECTS]})

    def start(self) -> FakeProvider:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "the fake provider did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _gzip_anyway(body: dict[str, Any]) -> Response:
    """A server that compresses whatever the request's Accept-Encoding says."""
    dialect = DIALECTS["ollama"]
    if body.get("stream"):
        raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in dialect.stream) + b"data: [DONE]\n\n"
        media = "text/event-stream"
    else:
        raw, media = orjson.dumps(completion_body(dialect)), "application/json"
    return Response(gzip.compress(raw), media_type=media, headers={"content-encoding": "gzip", **PROVIDER_HEADERS})


def _cut_mid_body(body: dict[str, Any]) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield b'{"id": "chatcmpl-cut", "object": "chat.completion", "choi'
        raise ConnectionResetError("the provider went away")  # uvicorn drops the connection mid-body

    return StreamingResponse(parts(), media_type="application/json")


def _stall_mid_body(body: dict[str, Any]) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        yield b'{"id": "chatcmpl-stall", "object": "chat.completion", "choi'
        await asyncio.sleep(30)

    return StreamingResponse(parts(), media_type="application/json")


TRANSPORT_FAULTS = {"gzip-anyway": _gzip_anyway, "cut-mid-body": _cut_mid_body, "stall-mid-body": _stall_mid_body}

FORCED_ARGUMENTS = {"memory_insert": {"label": "human", "new_str": "Prefers tea"}}


def _forced_call(body: dict[str, Any]) -> list[dict[str, Any]]:
    name = body["tools"][0]["function"]["name"]
    call = {"index": 0, "id": "call_forced", "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(FORCED_ARGUMENTS.get(name, {})).decode()}}
    head = {"id": "chatcmpl-forced", "object": "chat.completion.chunk", "created": 1764540000, "model": body["model"]}
    return [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]},
                                  "finish_reason": None}]},
            {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}]


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider().start()
    yield fake
    fake.stop()


@pytest.fixture
def gateway(make_server: Any, provider: FakeProvider) -> Any:
    """memproxy in front of the fake provider."""
    return make_server(upstream_url=provider.base_url)
