"""A fake provider: a real HTTP server that answers in the dialect the request's `model` names."""

from __future__ import annotations

import asyncio
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

from dialects import DIALECTS, completion_body
from helpers import free_port


class FakeProvider:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]),
                                Route("/v1/models", self.models, methods=["GET"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
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
