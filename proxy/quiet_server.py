"""uvicorn's server, woken once a second instead of ten times, and at once when told to stop.

uvicorn's main loop sleeps 0.1 s at a time to look at `should_exit` (and, every tenth time, to renew the Date
header): ten wake-ups a second of a process with nothing to do (the embedded simulator runs another). On a virtual
machine each costs tens to hundreds of microseconds of CPU, and a paced stream of turns (a voice call's, one every
second or so) pays them between its turns, from caches the wake-up has cooled. Here the loop sleeps until the
next whole second, when the Date header changes, and setting `should_exit` (a signal's handler, another thread
stopping the server) wakes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import uvicorn


class QuietServer(uvicorn.Server):
    """`uvicorn.Server`, ticking once a second (`tick`) and woken by `should_exit` being set."""

    tick = 1.0  # seconds between looks at the clock when nothing else wakes the loop
    _exit = False
    _wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    @property  # type: ignore[override]
    def should_exit(self) -> bool:
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit = value
        wake = self._wake
        if value and wake is not None:
            loop, event = wake
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing is left to wake
                loop.call_soon_threadsafe(event.set)

    async def main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._wake = (loop, event)
        try:
            # Counter 0 every time: uvicorn's `on_tick` renews the Date header when the counter is a multiple of 10.
            while not await self.on_tick(0):
                timer = loop.call_later(self.tick - time.time() % self.tick, event.set)
                await event.wait()
                event.clear()
                timer.cancel()
        finally:
            self._wake = None
