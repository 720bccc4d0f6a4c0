"""Log set-up: plain text, or one JSON object per line that carries the request, agent and run it concerns."""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

import orjson

# Which request, agent and run the code now running serves; tasks a request spawns inherit them.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
agent_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("agent_id", default=None)
run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One object per line: time, level, logger, message, ids, timings, and the traceback if any.

    Only the rendered message and these named fields go out: never request bodies, content or headers.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", request_id), ("agent_id", agent_id), ("run_id", run_id)):
            value = var.get()
            if value:
                out[name] = value
        timings = getattr(record, "timings", None)
        if isinstance(timings, dict):
            out["timings"] = timings
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def configure_logging(level: str, fmt: str) -> None:
    """Root logging for `memproxy serve`; uvicorn's own loggers go through the same handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO: one line per upstream call is noise, and costs time on the hot path.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
