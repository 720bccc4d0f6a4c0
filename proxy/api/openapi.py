"""`GET /openapi.json` (OpenAPI 3.1), generated from the route tables' `Operation`s and their pydantic models.

The document describes the management API and Letta's messages API; `/v1/chat/completions` is OpenAI's
own, documented by OpenAI. It is built once per process, on first request.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy import __version__
from proxy.api.operations import Operation
from proxy.api.wire.common import ErrorResponse
from proxy.errors import APIError

_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"{(\w+)}")
_STATUS_TEXT = {400: "Bad request or unsupported field", 401: "Missing or wrong API key", 404: "Not found",
                409: "Conflict", 422: "Invalid field", 502: "The upstream failed", 503: "Not available"}


# One server-sent event; Letta's stream sends each message, then stop_reason and usage_statistics, then [DONE].
_SSE_EVENT = {"type": "object", "required": ["data"],
              "properties": {"data": {"type": "string", "description": "a LettaMessage, stop reason or usage as "
                                      "JSON; the last event is `[DONE]`"}, "event": {"type": "string"}}}


class _Schemas:
    """The `components/schemas` being collected, and a `$ref` (or inline schema) for each type."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, tp: Any, mode: JsonSchemaMode) -> dict[str, Any]:
        schema = TypeAdapter(tp).json_schema(ref_template=_REF, mode=mode)
        self.components.update(schema.pop("$defs", {}))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            self.components[tp.__name__] = schema
            return {"$ref": _REF.format(model=tp.__name__)}
        return schema


def _parameters(op: Operation, schemas: _Schemas) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                                 for name in _PATH_PARAM.findall(op.path)]
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=_REF)
        schemas.components.update(schema.pop("$defs", {}))
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            prop.pop("title", None)
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in prop:
                param["description"] = prop.pop("description")
            out.append(param)
    return out


def _operation(op: Operation, schemas: _Schemas) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if op.response is not None:
        content["application/json"] = {"schema": schemas.ref(op.response, "serialization")}
    if op.stream:
        content["text/event-stream"] = {"schema": _SSE_EVENT}
    ok: dict[str, Any] = {"description": "OK" if op.status == 200 else "No content"}
    if content:
        ok["content"] = content
    responses: dict[str, Any] = {str(op.status): ok}
    error = {"content": {"application/json": {"schema": schemas.ref(ErrorResponse, "serialization")}}}
    for status in (*op.errors, *(() if op.open else (401,))):
        responses[str(status)] = {"description": _STATUS_TEXT.get(status, "Error"), **error}
    responses["4XX"] = {"description": "Any other client error, in the same shape", **error}
    responses["5XX"] = {"description": "A server error, in the same shape", **error}
    out: dict[str, Any] = {
        "operationId": op.endpoint.__name__,
        "summary": op.summary,
        "tags": list(op.tags),
        "parameters": _parameters(op, schemas),
        "responses": responses,
    }
    if op.endpoint.__doc__:
        out["description"] = op.endpoint.__doc__.strip()
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required,
                              "content": {"application/json": {"schema": schemas.ref(op.body, "validation")}}}
    if op.open:
        out["security"] = []
    return {**out, **op.extra}


def document(operations: list[Operation]) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    for op in operations:
        entry = _operation(op, schemas)
        if entry["operationId"] in seen:  # one handler serving two operations: ids must stay unique
            entry["operationId"] += "_" + op.method.lower() + re.sub(r"\W+", "_", op.path).rstrip("_")
        seen.add(entry["operationId"])
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "memproxy", "version": __version__,
                 "description": "memproxy's Letta-compatible management API and Letta's messages API. "
                                "Paths answer with and without the trailing slash (except /v1/models, "
                                "whose two spellings answer OpenAI's and Letta's shapes). A field a body "
                                "does not declare is refused with 400 `unsupported_parameter` unless null, "
                                "false or empty."},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.components.items())),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "one of the server's API keys, when set"}}},
        "security": [{"bearer": []}],
    }


# The docs page's files, read from the package: no CDN, works offline. Only these names are ever read.
_DOC_FILES = {"docs.js": "text/javascript; charset=utf-8", "docs.css": "text/css; charset=utf-8"}
DOCS_STATIC = "/docs/static/"
# The document and the page describe the API, never its data: served without a key, like the console's code.
OPEN_PATHS = frozenset({"/openapi.json", "/docs", "/docs/", *(DOCS_STATIC + name for name in _DOC_FILES)})
_PAGE_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@lru_cache(maxsize=None)
def _read(name: str) -> bytes:
    return resources.files("proxy.api.docs").joinpath(name).read_bytes()


def openapi_routes(operations: list[Operation]) -> list[Route]:
    """`/openapi.json`, `/docs` and the page's two files."""
    encoded: list[bytes] = []

    async def openapi_json(request: Request) -> Response:
        if not encoded:
            encoded.append(orjson.dumps(document(operations)))
        return Response(encoded[0], media_type="application/json")

    async def docs_page(request: Request) -> Response:
        return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    async def docs_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _DOC_FILES:
            raise APIError(404, "no such file", code="route_not_found")
        return Response(_read(name), media_type=_DOC_FILES[name], headers=_PAGE_HEADERS)

    return [Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/docs", docs_page, methods=["GET"]), Route("/docs/", docs_page, methods=["GET"]),
            Route(DOCS_STATIC + "{name}", docs_file, methods=["GET"])]
