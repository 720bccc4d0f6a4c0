"""What is stored can always be read: input limits, refused writes that persist nothing, rows that cannot be
decoded, a 500 that closes its connection cleanly, and auth exemptions by exact path."""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Callable

import duckdb
import httpx
import pytest

from helpers import ON_POSTGRES
from memory.duckdb_store import DATABASE_FILE
from proxy.limits import MAX_BLOCK_LIMIT, MAX_CONTEXT_WINDOW, MAX_JSON_BYTES, MAX_JSON_DEPTH, MAX_NAME_CHARS


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = {"a": value}
    return {"a": value} if depth else value


def raw_json(**fields: str) -> bytes:
    """A body whose values are given as JSON text, so integers of any size go over the wire as written."""
    return ("{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items()) + "}").encode()


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 254, 300])
def test_deep_metadata_is_refused_and_nothing_is_saved(http: httpx.Client, create_agent: Callable[..., Any],
                                                       expect_error: Callable[..., Any], depth: int) -> None:
    agent = create_agent(name="keep", metadata={"k": 1}, memory_blocks=[{"label": "human", "value": "h"}])
    block_id = agent["blocks"][0]["id"]
    body = {"name": "changed", "metadata": nested(depth)}
    error = expect_error(http.patch(f"/v1/agents/{agent['id']}", json=body), 422)
    assert error["param"] == "metadata"
    error = expect_error(http.patch(f"/v1/blocks/{block_id}", json={"value": "changed", "metadata": nested(depth)}),
                         422)
    assert error["param"] == "metadata"
    expect_error(http.post("/v1/agents/", json={"metadata": nested(depth)}), 422)
    expect_error(http.post("/v1/blocks/", json={"label": "x", "metadata": nested(depth)}), 422)
    # The refused PATCHes changed nothing, and every listing still answers.
    stored = http.get(f"/v1/agents/{agent['id']}").json()
    assert (stored["name"], stored["metadata"]) == ("keep", {"k": 1})
    assert http.get(f"/v1/blocks/{block_id}").json()["value"] == "h"
    assert http.get("/v1/agents/").status_code == 200
    assert http.get("/v1/blocks/").status_code == 200


def test_metadata_at_the_limits_is_kept(http: httpx.Client, create_agent: Callable[..., Any],
                                        expect_error: Callable[..., Any]) -> None:
    agent = create_agent(metadata=nested(MAX_JSON_DEPTH))
    assert agent["metadata"] == nested(MAX_JSON_DEPTH)
    big = {"blob": "x" * (MAX_JSON_BYTES - 20)}
    assert http.patch(f"/v1/agents/{agent['id']}", json={"metadata": big}).status_code == 200
    error = expect_error(http.patch(f"/v1/agents/{agent['id']}", json={"metadata": {"blob": "x" * MAX_JSON_BYTES}}),
                         422, "value_too_long")
    assert error["param"] == "metadata"
    assert http.get(f"/v1/agents/{agent['id']}").json()["metadata"] == big


@pytest.mark.parametrize(("field", "value"), [
    ("context_window_limit", "9223372036854775808"), ("context_window_limit", "18446744073709551615"),
    ("context_window_limit", str(MAX_CONTEXT_WINDOW + 1)), ("context_window_limit", "1e30"),
    ("max_tokens", "9223372036854775807"), ("temperature", "-9223372036854775808"),
])
def test_agent_integers_out_of_range(http: httpx.Client, create_agent: Callable[..., Any],
                                     expect_error: Callable[..., Any], field: str, value: str) -> None:
    agent = create_agent()
    for method, url in (("POST", "/v1/agents/"), ("PATCH", f"/v1/agents/{agent['id']}")):
        response = http.request(method, url, content=raw_json(**{field: value}))
        error = expect_error(response, 422)
        assert error["param"] == field, error
    assert http.get(f"/v1/agents/{agent['id']}").json()["context_window_limit"] is None


@pytest.mark.parametrize("value", ["9223372036854775808", "18446744073709551615", str(MAX_BLOCK_LIMIT + 1), "-1"])
def test_block_limit_out_of_range(http: httpx.Client, expect_error: Callable[..., Any], value: str) -> None:
    block = http.post("/v1/blocks/", json={"label": "b", "value": "v"}).json()
    error = expect_error(http.patch(f"/v1/blocks/{block['id']}", content=raw_json(limit=value)), 422)
    assert error["param"] == "limit"
    error = expect_error(http.post("/v1/blocks/", content=raw_json(label='"b"', limit=value)), 422)
    assert error["param"] == "limit"
    assert http.get(f"/v1/blocks/{block['id']}").json()["limit"] == 20000


def test_query_integers_out_of_range(http: httpx.Client, create_agent: Callable[..., Any],
                                     expect_error: Callable[..., Any]) -> None:
    agent = create_agent()
    for url in ("/v1/agents/", "/v1/blocks/", "/v1/runs", f"/v1/agents/{agent['id']}/messages",
                f"/v1/agents/{agent['id']}/archival-memory"):
        for value in ("9223372036854775808", "1" * 5000, "-1"):
            assert expect_error(http.get(url, params={"limit": value}), 422)["param"] == "limit"


def test_strings_that_cannot_be_stored(http: httpx.Client, create_agent: Callable[..., Any],
                                       expect_error: Callable[..., Any]) -> None:
    agent = create_agent(name="keep")
    url = f"/v1/agents/{agent['id']}"
    for body in ({"name": "a\x00b"}, {"system": "\x00"}, {"tags": ["ok", "t\x00"]}, {"metadata": {"k\x00": 1}},
                 {"name": "n" * (MAX_NAME_CHARS + 1)}, {"tags": ["t"] * 1001}):
        error = expect_error(http.patch(url, json=body), 422)
        assert error["param"] == next(iter(body))
    # A lone surrogate is not valid JSON text: refused before any field is looked at.
    expect_error(http.patch(url, content=b'{"name": "\\ud800"}'), 400, "invalid_json")
    expect_error(http.patch(url, content=b'{"name": "\xff"}'), 400, "invalid_json")
    assert http.get(url).json()["name"] == "keep"
    passages = f"/v1/agents/{agent['id']}/archival-memory"
    assert expect_error(http.post(passages, json={"text": "a\x00b"}), 422)["param"] == "text"


@pytest.mark.skipif(ON_POSTGRES, reason="writes broken rows through DuckDB: the embedded backend only")
def test_rows_that_cannot_be_read_are_repaired_on_the_way_out(make_server: Callable[..., Any],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    server = make_server()
    data_dir = server.settings.data_dir
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        agent = http.post("/v1/agents/", json={"memory_blocks": [{"label": "human", "value": "h"}],
                                               "tags": ["t"]}).json()
        other = http.post("/v1/agents/", json={"name": "fine", "metadata": {"ok": True}}).json()
    server.stop()
    # Plant what no request could store any more: too deep to encode again, not JSON, the wrong JSON type.
    con = duckdb.connect(os.path.join(data_dir, DATABASE_FILE))
    deep = json.dumps(nested(300))
    con.execute("UPDATE agents SET metadata = ?, tools = ?, tags = ? WHERE id = ?",
                [deep, '{"not": "a list"}', "not json", agent["id"]])
    con.execute("UPDATE blocks SET metadata = ? WHERE id = ?", ["[1, 2]", agent["blocks"][0]["id"]])
    con.close()
    restarted = make_server(data_dir=data_dir)
    with httpx.Client(base_url=restarted.base_url, timeout=30) as http:
        listed = http.get("/v1/agents/")
        assert listed.status_code == 200, listed.text
        by_id = {a["id"]: a for a in listed.json()}
        planted = by_id[agent["id"]]
        assert (planted["metadata"], planted["tools"], planted["tags"]) == ({}, [], [])
        assert by_id[other["id"]]["metadata"] == {"ok": True}
        blocks = http.get("/v1/blocks/")
        assert blocks.status_code == 200, blocks.text
        assert {b["id"]: b for b in blocks.json()}[agent["blocks"][0]["id"]]["metadata"] == {}
        assert http.get(f"/v1/agents/{agent['id']}").status_code == 200
        # The agent is usable again: a valid write replaces the bad field for good.
        fixed = http.patch(f"/v1/agents/{agent['id']}", json={"metadata": {"repaired": 1}})
        assert fixed.status_code == 200 and fixed.json()["metadata"] == {"repaired": 1}
    warnings = [r.getMessage() for r in caplog.records if "stored row" in r.getMessage()]
    assert any(agent["id"] in w and "metadata" in w for w in warnings)
    assert not any('"a"' in w or "leaf" in w for w in warnings)  # the content itself is never logged


def _exchange(sock: socket.socket, request: bytes) -> tuple[bytes, bytes]:
    """Send one request; (head, body) of the answer, read by its Content-Length."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head.lower(), body


def test_a_500_closes_its_connection_and_says_so(make_server: Callable[..., Any]) -> None:
    server = make_server()
    server.call(server.rt.store.close())  # a real failure: the store is gone under a running server
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head, body = _exchange(sock, b"GET /v1/agents/ HTTP/1.1\r\nHost: t\r\n\r\n")
            assert head.startswith(b"http/1.1 500")
            assert b"connection: close" in head
            assert json.loads(body)["error"]["code"] == "internal_error"
            assert sock.recv(1) == b""  # the server closed the connection, as it said it would
        # A client reusing its keep-alive connection is not hurt: it opens a new one.
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            assert http.get("/v1/agents/").status_code == 500
            assert http.get("/v1/health/").status_code == 200
    finally:
        server.call(server.rt.store.open())


def test_a_500_on_the_chat_path_closes_its_connection_too(make_server: Callable[..., Any]) -> None:
    """/v1/chat/completions bypasses Starlette's router (ChatFastPath): its failures must still end the same way."""
    server = make_server()
    server.call(server.rt.store.close())  # an agent not loaded yet must be read from a store that is gone
    try:
        body = json.dumps({"model": "agent-00000000-0000-4000-8000-000000000000",
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                   b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head, answer = _exchange(sock, request)
            assert head.startswith(b"http/1.1 500"), head
            assert b"connection: close" in head
            assert json.loads(answer)["error"]["code"] == "internal_error"
            assert sock.recv(1) == b""
    finally:
        server.call(server.rt.store.open())
    counted = httpx.get(server.base_url + "/metrics").text
    assert 'memproxy_requests_total{route="chat_completions",status="500"} 1.0' in counted


def test_auth_exemption_is_by_exact_path(make_server: Callable[..., Any]) -> None:
    server = make_server(api_keys=("secret",))
    for path in ("/v1/health", "/v1/health/"):
        assert httpx.get(server.base_url + path).status_code == 200
    for path in (b"/v1/healthz", b"/v1/health%2F..%2Fagents/", b"/v1/health/../agents/", b"/v1/health/x"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head, body = _exchange(sock, b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            assert head.startswith(b"http/1.1 401"), (path, head)
            assert json.loads(body)["error"]["code"] == "invalid_api_key"
    authed = httpx.get(server.base_url + "/v1/agents/", headers={"Authorization": "Bearer secret"})
    assert authed.status_code == 200


def test_bad_dates_name_their_own_field(http: httpx.Client, create_agent: Callable[..., Any],
                                        expect_error: Callable[..., Any]) -> None:
    agent = create_agent()
    for field in ("start_date", "end_date"):
        for value in ({}, 5, "not a date"):
            body = {"agent_id": agent["id"], "query": "q", field: value}
            assert expect_error(http.post("/v1/agents/messages/search", json=body), 422)["param"] == field
    for field in ("start_datetime", "end_datetime"):
        response = http.get(f"/v1/agents/{agent['id']}/archival-memory/search", params={"query": "q", field: "x"})
        assert expect_error(response, 422)["param"] == field
