"""Request/response plumbing shared by every route: bounded JSON bodies, fast JSON responses, auth."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.errors import APIError


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS), status_code=status,
                    media_type="application/json", headers=headers)


async def read_body(request: Request, declared: bytes | None = None) -> bytes:
    """The raw body, refused with 413 once it passes the configured size.

    `declared` is the Content-Length header when the caller has already found it among the raw headers.
    The body is read from the ASGI `receive` directly (Starlette's `Request.stream` is an async generator,
    a cost of its own per request); `Request.body()` is not used afterwards on these routes.
    """
    limit: int = request.app.state.settings.max_body_bytes
    if declared is None:
        declared = request.headers.get("content-length", "").encode("latin-1")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body is {declared.decode()} bytes; the limit is {limit}",
                       code="request_too_large")
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client left before sending all of it
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"request body exceeds the limit of {limit} bytes", code="request_too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The body parsed as a JSON object; 400 when it is not one."""
    raw = await read_body(request)
    if not raw.strip() and not required:
        return {}
    return parse_json_object(raw)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """`raw` as a JSON object; 400 when it is malformed or not an object."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"malformed JSON body: {exc.msg} at position {exc.pos}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return data


class BearerKeys:
    """Every route but health needs `Authorization: Bearer <key>` when keys are set."""

    def __init__(self, keys: tuple[str, ...], open_paths: frozenset[str] = frozenset({"/v1/health", "/v1/health/"})
                 ) -> None:
        self.keys = tuple(k.encode() for k in keys)
        # Exact paths only: a prefix would also open `/v1/healthz` and `/v1/health%2F..%2Fagents/`.
        self.open_paths = open_paths

    def refusal(self, scope: Scope) -> Response | None:
        """The 401 an HTTP request gets, or None when it may pass."""
        if not self.keys or scope["path"] in self.open_paths:
            return None
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                presented = value
                break
        scheme, _, token = presented.partition(b" ")
        # Compare against every key so the time taken does not reveal which one nearly matched.
        ok = False
        if scheme.lower() == b"bearer":
            for key in self.keys:
                ok |= hmac.compare_digest(token.strip(), key)
        if ok:
            return None
        message = "missing bearer token" if not presented else "invalid API key"
        return APIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}).response()


class BearerAuth:
    """ASGI middleware: an HTTP request `BearerKeys` refuses gets its 401 here."""

    def __init__(self, app: ASGIApp, keys: BearerKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self.keys.refusal(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def query_int(request: Request, name: str, default: int | None, *, low: int = 1, high: int = 1000) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(422, f"query parameter {name!r} must be an integer", param=name) from None
    if not low <= value <= high:
        raise APIError(422, f"query parameter {name!r} must be between {low} and {high}", param=name)
    return value


def query_bool(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return raw.lower() in ("1", "true", "yes")
