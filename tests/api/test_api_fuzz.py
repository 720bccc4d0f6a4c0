"""Hostile input on every route of the app, over real HTTP: never a 5xx, always the OpenAI error shape.

The routes are read from the app itself, so a route added later is fuzzed without touching this file.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

METHODS = ("GET", "POST", "PATCH", "DELETE")
# Body fields the routes read, so that most bodies reach validation instead of stopping at "unknown".
FIELDS = ("name", "system", "model", "embedding", "description", "tags", "metadata", "llm_config",
          "embedding_config", "memory_blocks", "block_ids", "tool_ids", "tools", "include_base_tools",
          "context_window_limit", "message_buffer_autoclear", "temperature", "top_p", "max_tokens", "label",
          "value", "limit", "read_only", "text", "agent_id", "query", "search_mode", "roles", "start_date",
          "end_date", "messages", "stream", "stream_options", "n", "functions", "function_call", "tool_choice",
          "user", "response_format", "stop", "seed", "tool_call_id", "content", "role")
OBJECT_FIELDS = ("metadata", "llm_config", "embedding_config", "tool_choice", "response_format", "stream_options")
QUERY_NAMES = ("limit", "after", "before", "order", "ascending", "name", "tags", "label", "agent_id", "query",
               "search", "top_k", "tag_match_mode", "start_datetime", "end_datetime", "match_all_tags")
HUGE_INTS = ("9223372036854775808", "18446744073709551616", "-9223372036854775809", "9" * 40, "1e400")
PATH_TRICKS = ("..%2F..%2Fagents", "%2e%2e%2F", "%00", "agent-%00", "x" * 10_000, "%ff%fe", "nope",
               "agent-00000000-0000-4000-8000-000000000000", "block-00000000-0000-4000-8000-000000000000",
               "%20", "human%2F..%2Fpersona")
DEEP = 300
TEN_MB = 10 * 1024 * 1024


class Tally:
    """Requests sent and server errors seen, across the whole module."""

    sent = 0
    server_errors: list[str] = []


def nested(depth: int, leaf: Any = "x") -> Any:
    value: Any = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=24))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


def encode(value: Any) -> bytes:
    # The standard library writes integers of any size, which is the point of some of these bodies.
    return json.dumps(value).encode()


@st.composite
def bodies(draw: st.DrawFn, agent_id: str) -> bytes:
    kind = draw(st.sampled_from(("fields", "fields", "chat", "deep", "huge_int", "raw", "not_object",
                                 "surrogate", "nul")))
    field = draw(st.sampled_from(FIELDS))
    if kind == "fields":
        return encode(draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5)))
    if kind == "chat":
        model = draw(st.sampled_from((agent_id, agent_id, "sim-small", "agent-nope", "")))
        message = draw(st.fixed_dictionaries({"role": st.sampled_from(("user", "tool", "assistant", "system"))},
                                             optional={"content": json_values, "tool_calls": json_values,
                                                       "tool_call_id": json_values, "name": json_values}))
        extra = draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=3))
        return encode({**extra, "model": model, "messages": [message]})
    if kind == "deep":
        return encode({field: nested(DEEP)})
    if kind == "huge_int":
        return f'{{"{field}": {draw(st.sampled_from(HUGE_INTS))}}}'.encode()
    if kind == "raw":
        return draw(st.binary(max_size=40) | st.sampled_from(
            (b'{"name": "\xff\xfe"}', b'{"label": "a\x00b"}', b"\xef\xbb\xbf{}", b"", b"{" * DEEP)))
    if kind == "not_object":
        return encode(draw(json_values.filter(lambda v: not isinstance(v, dict))))
    if kind == "surrogate":
        return f'{{"{field}": "\\ud800x"}}'.encode()
    return encode({field: draw(st.sampled_from(("a\x00b", {"k\x00": 1}, ["\x00"])))})


class Fuzzer:
    """Sends requests to the server and checks every answer."""

    def __init__(self, http: httpx.Client, routes: list[tuple[str, frozenset[str], Any]],
                 check_error: Callable[..., Any]) -> None:
        self.http = http
        self.check_error = check_error
        self.routes = routes
        self.ids: dict[str, str] = {}
        self.refresh()

    def refresh(self) -> None:
        """Real records to aim at; recreated after a fuzzed DELETE or PATCH took them away."""
        agent = self.http.post("/v1/agents/", json={"memory_blocks": [{"label": "human", "value": "h"}],
                                                    "embedding": "sim-embedding"})
        assert agent.status_code == 200, agent.text
        block = self.http.post("/v1/blocks/", json={"label": "notes", "value": "n"})
        assert block.status_code == 200, block.text
        agent_id = agent.json()["id"]
        passage = self.http.post(f"/v1/agents/{agent_id}/archival-memory", json={"text": "a fact"})
        assert passage.status_code == 200, passage.text
        runs = self.http.get("/v1/runs", params={"limit": 1}).json()
        self.ids = {"agent_id": agent_id, "block_id": block.json()["id"], "block_label": "human",
                    "passage_id": passage.json()[0]["id"], "run_id": runs[0]["id"] if runs else "run-none"}

    def send(self, method: str, url: str, body: bytes | None = None, query: dict[str, str] | None = None) -> int:
        headers = {"content-type": "application/json"} if body is not None else {}
        response = self.http.request(method, url, content=body, params=query, headers=headers)
        Tally.sent += 1
        if response.status_code >= 500:
            Tally.server_errors.append(f"{method} {url[:120]} -> {response.status_code}: {response.text[:200]}")
        elif response.status_code >= 400:
            self.check_error(response, response.status_code)
        if method == "DELETE" and response.status_code == 200:
            self.refresh()
        return response.status_code

    def path(self, template: str, tricks: dict[str, str]) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: tricks.get(m.group(1)) or self.ids.get(m.group(1), "x"), template)


@pytest.fixture
def fuzzer(make_server: Callable[..., Any], expect_error: Callable[..., Any]) -> Iterator[Fuzzer]:
    server = make_server(embedding_model="sim-embedding")  # archival and recall search take their vector paths
    routes = [(r.path, frozenset(r.methods or ()), r.endpoint) for r in server.app.routes if isinstance(r, Route)]
    assert len(routes) > 60 and any("chat/completions" in route[0] for route in routes)
    with httpx.Client(base_url=server.base_url, timeout=20) as http:
        yield Fuzzer(http, routes, expect_error)


def test_every_route_survives_malformed_input(fuzzer: Fuzzer, capsys: pytest.CaptureFixture[str]) -> None:
    route_index = st.integers(min_value=0, max_value=len(fuzzer.routes) - 1)
    trick = st.sampled_from(PATH_TRICKS) | st.just("")
    query = st.dictionaries(st.sampled_from(QUERY_NAMES), st.sampled_from(HUGE_INTS + ("-1", "0", "%00", "\x00",
                                                                                        "desc", "x" * 5000))
                            | st.text(max_size=12), max_size=3)

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        template, methods, _ = fuzzer.routes[data.draw(route_index)]
        # Mostly the route's own method; sometimes another, which must be a clean 405.
        method = data.draw(st.sampled_from(sorted(methods - {"HEAD"})) | st.sampled_from(METHODS))
        names = re.findall(r"\{(\w+)\}", template)
        tricks = {name: data.draw(trick) for name in names}
        body = data.draw(bodies(fuzzer.ids["agent_id"])) if method in ("POST", "PATCH") else None
        fuzzer.send(method, fuzzer.path(template, tricks), body, data.draw(query))

    one()
    with capsys.disabled():
        print(f"\nfuzz: {Tally.sent} requests, {len(Tally.server_errors)} answered 5xx")
    assert not Tally.server_errors, "\n".join(Tally.server_errors[:20])


def hostile_values(field: str) -> list[bytes]:
    """JSON texts the sweep puts into `field` in turn, the deepest first; object-sized ones only for objects."""
    # Lone surrogates and integers past 64 bits fail at parsing, whatever the field: the random fuzz sends those.
    values = [encode(nested(DEEP)), encode(nested(250)), b"9223372036854775808", encode("a\x00b"),
              encode("y" * 12_000)]
    if field in OBJECT_FIELDS:
        values += [encode(nested(40)), encode({"a\x00": 1}), encode({f"k{i}": i for i in range(8000)})]
    return values


# Bodies a route accepts, so a hostile field is checked after the required ones pass; others start empty.
def base_body(path: str, ids: dict[str, str]) -> dict[str, Any]:
    if "chat/completions" in path:
        return {"model": ids["agent_id"], "messages": [{"role": "user", "content": "hi"}]}
    if path.rstrip("/") == "/v1/blocks":
        return {"label": "swept", "value": "v"}
    if path.rstrip("/").endswith("/archival-memory"):
        return {"text": "a passage"}
    if path.rstrip("/") == "/v1/agents/messages/search":
        return {"agent_id": ids["agent_id"], "query": "q"}
    if path.rstrip("/").endswith("preview-raw-payload"):
        return {"messages": [{"role": "user", "content": "hi"}]}
    return {}


def test_every_field_of_every_write_route(fuzzer: Fuzzer, capsys: pytest.CaptureFixture[str]) -> None:
    """Each hostile value in each field, on each POST and PATCH route (one of each slash variant)."""
    before = Tally.sent
    # One path per endpoint and method: aliases and slash variants run the same code.
    writes = sorted({(endpoint, method): path for path, methods, endpoint in fuzzer.routes
                     for method in methods if method in ("POST", "PATCH")}.items(), key=lambda kv: kv[1])
    for (_, method), template in writes:
        for field in FIELDS:
            for value in hostile_values(field):
                base = encode(base_body(template, fuzzer.ids))
                head = base[:-1] + (b", " if base != b"{}" else b"")
                status = fuzzer.send(method, fuzzer.path(template, {}), head + encode(field) + b": " + value + b"}")
                if status < 300:
                    break  # a 300-level value went through: the route ignores this field, the rest would be too
        if "chat/completions" in template:
            for value in hostile_values("content"):
                for message in (b'{"role": "user", "content": %s}', b'{"role": "user", "name": %s, "content": "x"}',
                                b'{"role": "tool", "tool_call_id": %s, "content": "x"}',
                                b'{"role": "assistant", "tool_calls": %s}'):
                    body = b'{"model": "%s", "messages": [%s]}' % (fuzzer.ids["agent_id"].encode(), message % value)
                    fuzzer.send(method, fuzzer.path(template, {}), body)
    # Whatever the sweep managed to store, every read still answers.
    reads = {endpoint: path for path, methods, endpoint in fuzzer.routes if "GET" in methods}
    for template in sorted(reads.values()):
        fuzzer.send("GET", fuzzer.path(template, {}))
    with capsys.disabled():
        print(f"\nfuzz sweep: {Tally.sent - before} requests, {len(Tally.server_errors)} answered 5xx")
    assert not Tally.server_errors, "\n".join(Tally.server_errors[:20])


def test_ten_megabyte_strings(fuzzer: Fuzzer, capsys: pytest.CaptureFixture[str]) -> None:
    agent_id = fuzzer.ids["agent_id"]
    big = "x" * TEN_MB
    cases = [("POST", "/v1/agents/", {"name": big}), ("PATCH", f"/v1/blocks/{fuzzer.ids['block_id']}", {"value": big}),
             ("POST", "/v1/chat/completions", {"model": agent_id, "messages": [{"role": "user", "content": big}]}),
             ("POST", f"/v1/agents/{agent_id}/archival-memory", {"text": big})]
    before = Tally.sent
    for method, url, body in cases:
        fuzzer.send(method, url, encode(body))
    with capsys.disabled():
        print(f"\nfuzz (10 MB strings): {Tally.sent - before} requests, {len(Tally.server_errors)} answered 5xx")
    assert not Tally.server_errors, "\n".join(Tally.server_errors)
