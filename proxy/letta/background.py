"""Letta's `background: true`: the streamed run is resumable, each chunk numbered by its `seq_id`."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.errors import APIError
from proxy.letta.encoder import LettaStreamSink
from proxy.resumable import TeeQueue


class BackgroundStreamSink(LettaStreamSink):
    """A Letta stream whose chunks carry `seq_id` (the same number as their SSE `id:` line) and `run_id`."""

    def emit(self, message: dict[str, Any]) -> None:
        queue = self.queue
        if isinstance(queue, TeeQueue):  # a replay of an earlier request gets the plain stream
            message = {**message, "seq_id": queue.next_seq, "run_id": self.run_id}
        super().emit(message)


def error_bytes(error: APIError, run_id: str) -> bytes:
    """How a failure before the first chunk is kept in the run's log: as Letta's error_message."""
    return b"data: " + orjson.dumps({"message_type": "error_message", "error_type": error.code or "internal_error",
                                     "message": error.message, "detail": None, "run_id": run_id,
                                     "seq_id": None}) + b"\n\n"
