"""Errors in the OpenAI shape: `{"error": {"message", "type", "param", "code"}}`, on every route."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from memory.store import Conflict, NotFound, StoreUnavailable

log = logging.getLogger("memproxy")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout_error",
}


class APIError(Exception):
    """An error the client should see, with its HTTP status."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return Response(orjson.dumps(self.body()), status_code=self.status, media_type="application/json",
                        headers=self.headers)


def not_found(kind: str, ident: str, code: str = "not_found") -> APIError:
    return APIError(404, f"{kind} {ident!r} not found", code=code)


def unprocessable(message: str, param: str | None = None, code: str = "validation_error") -> APIError:
    return APIError(422, message, param=param, code=code)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "no such route", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    return APIError(exc.status_code, message, code="route_not_found" if exc.status_code == 404 else None).response()


async def handle_store_error(request: Request, exc: Exception) -> Response:
    """A store error no route turned into an answer: a vanished record is a 404, a lost race a 409."""
    if isinstance(exc, NotFound):
        return not_found(exc.kind, exc.ident).response()
    if isinstance(exc, Conflict):
        return APIError(409, f"the change conflicts with another write: {exc}", code="conflict").response()
    if isinstance(exc, StoreUnavailable):
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return database_unavailable(exc).response()
    return await handle_unexpected(request, exc)


def database_unavailable(exc: StoreUnavailable) -> APIError:
    """503 for a call that needed the database while it did not answer; nothing of the call was saved."""
    return APIError(503, f"{exc}; the request did not complete, send it again once the database answers",
                    code="database_unavailable", headers={"Retry-After": "1"})


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # The traceback stays in the server log; the client gets a plain message.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    # Starlette re-raises after this response and the server then drops the connection: say so, so the
    # client opens a new one instead of failing its next request on this one.
    return APIError(500, "internal server error", code="internal_error", headers={"Connection": "close"}).response()
