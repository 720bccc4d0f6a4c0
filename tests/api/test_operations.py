"""The Operation mechanism on its own small app: what a new endpoint gets from one table entry."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

import httpx
import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from proxy.api.openapi import document
from proxy.api.operations import Operation, QueryParams, RequestBody, param_of, routes_of
from proxy.api.wire.common import Name
from proxy.errors import APIError, handle_api_error
from proxy.http import json_response


class Part(RequestBody):
    name: Name


class ThingCreate(RequestBody):
    ignored: ClassVar[dict[str, Any]] = {"kind": "plain"}

    title: Name
    size: int | None = None
    parts: list[Part] | None = None


class Thing(BaseModel):
    title: str
    size: int | None
    tags: list[str]


class ThingQuery(QueryParams):
    tags: list[str] | None = None
    limit: int | None = None


async def create_thing(request: Request, body: ThingCreate, query: ThingQuery) -> Response:
    """Make a thing."""
    return json_response({"title": body.title, "size": body.size, "tags": query.tags or []})


async def plain(request: Request) -> Response:
    return json_response({"title": request.url.path, "size": None, "tags": []})


OPERATIONS = [
    Operation("POST", "/things/{owner}", create_thing, "Create a thing", ("things",), body=ThingCreate,
              query=ThingQuery, response=Thing),
    Operation("GET", "/plain", plain, "Only without the slash", ("things",), response=Thing, exact=True),
]


@pytest.fixture
def client() -> Any:
    app = Starlette(routes=routes_of(OPERATIONS), exception_handlers={APIError: handle_api_error})
    app.state.settings = SimpleNamespace(max_body_bytes=1 << 20)  # what read_json bounds a body by
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_valid_body_and_query_reach_the_handler_typed(client: httpx.AsyncClient) -> None:
    for path in ("/things/me", "/things/me/"):
        response = await client.post(path, params=[("tags", "a"), ("tags", "b")], json={"title": "t", "size": 2})
        assert response.json() == {"title": "t", "size": 2, "tags": ["a", "b"]}


@pytest.mark.parametrize(("body", "status", "param"), [
    ({}, 422, "title"),
    ({"title": 5}, 422, "title"),
    ({"title": "t", "size": "2"}, 422, "size"),  # strict: a string is not an integer
    ({"title": "t", "parts": [{"name": "a"}, {"name": None}]}, 422, "parts[1].name"),
    ({"title": "a\x00b"}, 422, "title"),  # proxy/limits.py's checks run inside the model
    ({"title": "t", "colour": "red"}, 400, "colour"),
    ({"title": "t", "kind": "fancy"}, 400, "kind"),
    ({"title": "t", "parts": [{"name": "a", "shape": "round"}]}, 400, "parts[0].shape"),
])
async def test_a_bad_body_is_refused_naming_the_field(client: httpx.AsyncClient, body: dict[str, Any], status: int,
                                                     param: str) -> None:
    response = await client.post("/things/me", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


async def test_off_values_and_declared_defaults_are_accepted(client: httpx.AsyncClient) -> None:
    body = {"title": "t", "colour": None, "flags": [], "kind": "plain", "extra": False}
    assert (await client.post("/things/me", json=body)).status_code == 200


async def test_a_bad_query_value_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/things/me", params={"limit": "many"}, json={"title": "t"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "limit"


async def test_paths_answer_with_and_without_the_slash_unless_exact(client: httpx.AsyncClient) -> None:
    assert [r.path for r in OPERATIONS[0].routes()] == ["/things/{owner}", "/things/{owner}/"]
    assert [r.path for r in OPERATIONS[1].routes()] == ["/plain"]
    assert (await client.get("/plain")).json()["title"] == "/plain"


def test_the_document_of_the_table() -> None:
    doc = document(OPERATIONS)
    validate(doc)
    op = doc["paths"]["/things/{owner}"]["post"]
    assert op["operationId"] == "create_thing" and op["description"] == "Make a thing."
    params = {(p["name"], p["in"]): p for p in op["parameters"]}
    assert params[("owner", "path")]["required"] is True
    assert params[("tags", "query")]["schema"]["anyOf"][0]["type"] == "array"
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ThingCreate"}
    assert doc["components"]["schemas"]["ThingCreate"]["additionalProperties"] is False
    assert "Part" in doc["components"]["schemas"]
    assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert "security" not in op  # the document's global bearer scheme applies
    assert doc["paths"]["/plain"]["get"]["parameters"] == []


def test_param_of_skips_pydantic_union_and_validator_tags() -> None:
    assert param_of(("messages", 0, "content", "str")) == "messages[0].content"
    assert param_of(("a", "function-after[check(), str]", "b")) == "a.b"
    assert param_of(()) == "body"
