"""A streamed response sent with plain asyncio: the hot path's replacement for Starlette's StreamingResponse.

Starlette streams through an anyio task group (two tasks, cancel scopes) per response so that a client
leaving cancels the body iterator. This does the same with one watcher task: when the server reports
`http.disconnect`, the responding task is cancelled inside the iterator (whose `finally` runs, as before),
the cancellation is absorbed, and its close callback still runs.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


# The scope extension under which a server offers a writer for a streamed body from outside `send`
# (proxy.http_server.BodyWriter: a callable taking bytes, True if it wrote them).
WRITE_NOW = "memproxy.write_now"


class LastChunk(bytes):
    """A body iterator's final chunk, marked so: it goes out with the end of the body in one write."""

    __slots__ = ()


class ClientWatch:
    """Listens for `http.disconnect` once a request's body has been read, on one task for the whole response.

    Before the response starts, `gone` tells whether the client left (no anyio cancel scope per check, as
    Starlette's `Request.is_disconnected` opens); once an `EventStream` adopts it, a disconnect cancels the
    task sending the stream. `close()` stops it when no stream takes it over; after a complete response it
    is left to end by itself, on the disconnect the server reports for a finished response (uvicorn and
    httpx's ASGI transport do; a server that did not would keep it until the connection closes).
    """

    __slots__ = ("gone", "ending", "target", "_task")

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self.ending = False  # the response is complete: the server reports that as a disconnect too
        self.target: asyncio.Task[Any] | None = None
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not self.ending:
                        self.gone = True
                        self._cancel_target()
                    return
        except asyncio.CancelledError:
            # The task would keep the error, its traceback this frame, and this frame `self`, which holds the
            # task: a cycle per request that only the garbage collector frees. Dropping the task breaks it.
            self._task = None
            raise

    def _cancel_target(self) -> None:
        if self.target is not None and not self.ending:
            self.target.cancel()

    def adopt(self, task: asyncio.Task[Any]) -> None:
        """From now on a disconnect cancels `task` (the one running the response)."""
        self.target = task
        if self.gone:
            # Gone already: cancel where the stream next waits, as a watcher started now would; a stream
            # that finishes without waiting ends normally.
            asyncio.get_running_loop().call_soon(self._cancel_target)

    def close(self) -> None:
        self.target = None
        if self.ending or self._task is None:
            # A complete response: the server reports it to `receive` as a disconnect (uvicorn wakes it in the
            # send that completes the response), so the watcher ends by itself, raising nothing.
            return
        self._task.cancel()


class EventStream(Response):
    """Sends `body_iterator`'s chunks as they come; `http.disconnect` stops it.

    `watch`, when given, is the request's `ClientWatch` (started before the response was built); otherwise
    the stream starts its own. An iterator that knows which chunk is its last yields it as a `LastChunk`
    (and nothing after it), saving the server a separate write (a system call) for the end of the body.
    """

    def __init__(self, body_iterator: AsyncIterator[bytes], status_code: int = 200,
                 headers: Mapping[str, str] | None = None, media_type: str | None = None,
                 on_close: Callable[[], Awaitable[None]] | None = None, watch: ClientWatch | None = None) -> None:
        self.body_iterator = body_iterator
        self.status_code = status_code
        self.media_type = media_type
        self.background = None
        self.on_close = on_close  # awaited once the response is over, sent whole or not (a plain coroutine
        # function: Starlette's BackgroundTask inspects its callable on every construction)
        self.watch = watch
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        watch = self.watch or ClientWatch(receive)
        watch.adopt(task)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            last = False
            async for chunk in self.body_iterator:
                last = type(chunk) is LastChunk
                if last:
                    watch.ending = True  # from here the server reports the finished response as a disconnect
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            if not last:
                watch.ending = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Our own watcher's cancel (the client left) ends the response; any other cancel goes on.
            if not watch.gone or task.uncancel() > 0:
                raise
        finally:
            watch.close()
        if self.on_close is not None:
            await self.on_close()
