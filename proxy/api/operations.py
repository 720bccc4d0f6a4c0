"""Typed routes: one `Operation` per endpoint carries its wire models, and both the router and the OpenAPI
document are built from it, so the document cannot drift from what the server checks.

How to add (or convert) an endpoint:

1. Write its wire types with pydantic in the surface's protocol module (`proxy/api/wire/<resource>.py`,
   `proxy/letta/protocol.py`): the request body as a subclass of `RequestBody` (fields it honours, typed with
   the bounded types of `proxy.api.wire.common`: `Name`, `Text`, `Metadata`, ...), the query string as a
   subclass of `QueryParams`, the answer as a plain `BaseModel` (or `list[Model]`) in Letta's shape.
2. Write the handler with keyword arguments for what the operation declares, already validated:
   `async def create_thing(request: Request, body: ThingCreate) -> Response` (and/or `query: ThingQuery`).
   Path parameters stay in `request.path_params`. Return `json_response(...)` as before.
3. Add one entry to the module's route table (`proxy/api/routes.py`, `proxy/letta/routes.py`):
   `Operation("POST", "/v1/things", create_thing, "Create a thing", ("things",), body=ThingCreate,
   response=Thing)`. `routes_of([...])` turns the table into Starlette routes (with and without the trailing
   slash) and `openapi.document()` into the document; nothing else to register.

A body that fails its model is a 422 in the OpenAI error shape whose `param` names the field
(`memory_blocks[0].label`); a field the model does not declare is a 400 `unsupported_parameter` naming it,
unless its value means "off" (null, false, empty) or the model lists it in `ignored` (see `RequestBody`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.errors import APIError
from proxy.http import read_json

Handler = Callable[..., Awaitable[Response]]
OFF_VALUES: tuple[Any, ...] = (None, False, [], {}, "")
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "dict", "list", "none", "literal"})


class RequestBody(BaseModel):
    """A JSON request body. Undeclared fields are kept aside and refused by name unless harmless."""

    # Undeclared fields are kept (to be refused by name), and documented as not allowed.
    model_config = ConfigDict(extra="allow", strict=True, json_schema_extra={"additionalProperties": False})
    # Undeclared fields accepted at these exact values too (what Letta's SDKs send by default).
    ignored: ClassVar[dict[str, Any]] = {}

    def refuse_unsupported(self, where: str = "") -> None:
        """400 naming the first undeclared field set to something, here or in a nested body (`memory_blocks[0].x`)."""
        for name, value in (self.model_extra or {}).items():
            if value in OFF_VALUES or (name in self.ignored and self.ignored[name] == value):
                continue
            raise APIError(400, f"`{where}{name}` is not supported by memproxy (see the README's Letta API "
                           "section); leave it unset", param=where + name, code="unsupported_parameter")
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, RequestBody):
                value.refuse_unsupported(f"{where}{name}.")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, RequestBody):
                        item.refuse_unsupported(f"{where}{name}[{i}].")

    def given(self) -> dict[str, Any]:
        """The declared fields the client set, as plain JSON values (what the hand-written rules read)."""
        return self.model_dump(exclude_unset=True, include=set(type(self).model_fields))


class QueryParams(BaseModel):
    """A query string; unknown names are ignored, as every HTTP API does."""

    model_config = ConfigDict(extra="ignore")


def param_of(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the field path a client reads: `memory_blocks[0].label`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = part
        elif "[" in part or "-" in part or part in _TYPE_TAGS:
            continue  # pydantic's names for a validator or union member, not a field
        else:
            out += f".{part}"
    return out or "body"


def validation_error(exc: ValidationError, where: str = "", status: int = 422) -> APIError:
    first = exc.errors(include_url=False, include_input=False)[0]
    param = param_of(tuple(first["loc"]))
    prefix = f"{where} " if where else ""
    message = str(first["msg"]).removeprefix("Value error, ")
    return APIError(status, f"{prefix}{param!r}: {message}", param=param,
                    code="validation_error" if status == 422 else "invalid_request")


async def parse_body(request: Request, model: type[RequestBody], *, required: bool = True,
                     status: int = 422) -> RequestBody:
    data = await read_json(request, required=required)
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, status=status) from None
    body.refuse_unsupported()
    return body


def parse_query(request: Request, model: type[QueryParams]) -> QueryParams:
    q = request.query_params
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        values = [v for v in q.getlist(key) if v != ""]
        if values:
            data[key] = values if _is_list(info.annotation) else values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, "query parameter") from None


def _is_list(annotation: Any) -> bool:
    return "list[" in str(annotation)


@dataclass(frozen=True)
class Operation:
    """One endpoint: method, path, handler, and the wire types the router checks and the document shows."""

    method: str
    path: str
    endpoint: Handler
    summary: str
    tags: tuple[str, ...]
    body: type[RequestBody] | None = None
    query: type[QueryParams] | None = None
    response: Any = None  # a model, `list[Model]`, a union; None: no JSON schema declared
    body_required: bool = True
    status: int = 200  # the success status the handler answers (204: no body), as Letta's reference says
    stream: bool = False  # also answers text/event-stream
    errors: tuple[int, ...] = (400, 404, 422)
    invalid_status: int = 422  # Letta's messages API answers a malformed body with 400, as it always has
    open: bool = False  # served without an API key
    exact: bool = False  # only this spelling of the path (`/v1/models` and `/v1/models/` answer differently)
    extra: dict[str, Any] = field(default_factory=dict)  # merged into the operation object as given

    async def handle(self, request: Request) -> Response:
        kwargs: dict[str, Any] = {}
        if self.query is not None:
            kwargs["query"] = parse_query(request, self.query)
        if self.body is not None:
            kwargs["body"] = await parse_body(request, self.body, required=self.body_required,
                                              status=self.invalid_status)
        return await self.endpoint(request, **kwargs)

    def routes(self) -> list[Route]:
        """The path with and without a trailing slash: a redirect would drop POST bodies in many clients."""
        bare = self.path.rstrip("/")
        endpoint = self.endpoint
        if self.body is not None or self.query is not None:
            async def endpoint(request: Request) -> Response:
                return await self.handle(request)

            endpoint.__name__ = self.endpoint.__name__  # the route label of metrics and logs
        if self.exact:
            return [Route(self.path, endpoint, methods=[self.method])]
        return [Route(bare, endpoint, methods=[self.method]), Route(bare + "/", endpoint, methods=[self.method])]


def routes_of(operations: list[Operation]) -> list[Route]:
    return [route for operation in operations for route in operation.routes()]
