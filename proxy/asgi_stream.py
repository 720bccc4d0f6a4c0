"""A streamed response sent with plain asyncio: the hot path's replacement for Starlette's StreamingResponse.

Starlette streams through an anyio task group (two tasks, cancel scopes) per response so that a client
leaving cancels the body iterator. This does the same with one watcher task: when the server reports
`http.disconnect`, the responding task is cancelled inside the iterator (whose `finally` runs, as before),
the cancellation is absorbed, and the background task still runs.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class EventStream(Response):
    """Sends `body_iterator`'s chunks as they come; `http.disconnect` stops it."""

    def __init__(self, body_iterator: AsyncIterator[bytes], status_code: int = 200,
                 headers: Mapping[str, str] | None = None, media_type: str | None = None,
                 background: BackgroundTask | None = None) -> None:
        self.body_iterator = body_iterator
        self.status_code = status_code
        self.media_type = media_type
        self.background = background
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        state = _State()
        watcher = asyncio.get_running_loop().create_task(_watch(receive, task, state))
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            state.ending = True  # from here the server reports the finished response as a disconnect
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            # Our own watcher's cancel (the client left) ends the response; any other cancel goes on.
            if not state.gone or task.uncancel() > 0:
                raise
        finally:
            watcher.cancel()
        if self.background is not None:
            await self.background()


class _State:
    __slots__ = ("ending", "gone")

    def __init__(self) -> None:
        self.ending = False
        self.gone = False


async def _watch(receive: Receive, task: asyncio.Task[Any], state: _State) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not state.ending:
                state.gone = True
                task.cancel()
            return
