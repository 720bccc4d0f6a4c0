"""Vapi's "Custom LLM": the request shape Vapi sends, answered by a memproxy agent, and kept out of the logs.

Vapi POSTs `{server url}/chat/completions` with the call's whole transcript (its own first message as an
assistant turn), `stream: true`, its `endCall` tool, and objects about the call and the caller (`call`,
`customer`, `phoneNumber`, `metadata`, `assistant`) that hold personal data.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Iterator

import httpx
import pytest
import uvicorn

from client_support import check_chunks, history, upstream_agent_calls
from helpers import create_agent, free_port, raw_events, serve_in_thread, sim_headers
from proxy.app import build_app
from proxy.cli import http_protocol
from proxy.config import Settings

SECRET_NUMBER = "+1555" + str(uuid.uuid4().int)[:7]
SECRET_CALL_ID = "call-secret-" + uuid.uuid4().hex
SECRET_TOKEN = "crm-token-" + uuid.uuid4().hex
SECRETS = (SECRET_NUMBER, SECRET_CALL_ID, SECRET_TOKEN)
FIRST_MESSAGE = "Hi, this is Ada's assistant. How can I help?"
END_CALL = {"type": "function", "function": {
    "name": "endCall", "description": "End the call when the caller says goodbye.",
    "parameters": {"type": "object", "properties": {}, "required": []}}}
LOGGERS = ("", "memproxy", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "httpx", "httpcore",
           "starlette")


def vapi_body(agent: str, transcript: list[dict[str, Any]]) -> dict[str, Any]:
    """A Custom LLM request as Vapi sends it (field names and nesting as recorded from Vapi)."""
    customer = {"number": SECRET_NUMBER, "name": "Jane Caller"}
    return {
        "model": agent,
        "messages": [{"role": "system", "content": "You are Ada's phone assistant. Be brief."},
                     {"role": "assistant", "content": FIRST_MESSAGE}, *transcript],
        "temperature": 0.7,
        "max_tokens": 250,
        "stream": True,
        "tools": [END_CALL],
        "call": {"id": SECRET_CALL_ID, "orgId": str(uuid.uuid4()), "type": "inboundPhoneCall",
                 "status": "in-progress", "phoneCallProvider": "twilio", "phoneCallProviderId": "CA" + uuid.uuid4().hex,
                 "createdAt": "2026-01-05T10:00:00.000Z", "customer": customer,
                 "phoneNumberId": str(uuid.uuid4()), "assistantId": str(uuid.uuid4())},
        "customer": customer,
        "phoneNumber": {"id": str(uuid.uuid4()), "number": "+15550000000", "provider": "twilio"},
        "metadata": {"crmToken": SECRET_TOKEN, "callerNumber": SECRET_NUMBER},
        "assistant": {"name": "Ada", "firstMessage": FIRST_MESSAGE, "metadata": {"crmToken": SECRET_TOKEN}},
    }


class Captured(logging.Handler):
    """Every log record, rendered with its arguments, extras and traceback."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.lines: list[str] = []  # logging.Handler.handle already holds the handler's lock around emit
        self.renderer = logging.Formatter("%(levelname)s %(name)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.renderer.format(record)
        except Exception as exc:  # noqa: BLE001 - a record that cannot render is still inspected raw
            text = f"<unformattable {record.msg!r} {record.args!r}: {exc}>"
        self.lines.append(text + " " + repr(record.__dict__))


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, sim_url: str) -> Iterator[tuple[str, Captured]]:
    """A memproxy with every logger at its most verbose (uvicorn at trace, access log on), captured."""
    handler = Captured()
    saved = {name: (logging.getLogger(name).level, logging.getLogger(name).disabled) for name in LOGGERS}
    port = free_port()
    settings = Settings.load({"port": port, "data_dir": str(tmp_path_factory.mktemp("vapi")),
                              "upstream_url": sim_url, "log_level": "debug"}, environ={})
    config = uvicorn.Config(build_app(settings), host="127.0.0.1", port=port, log_level="trace", access_log=True,
                            lifespan="on", timeout_graceful_shutdown=3, http=http_protocol())
    for name in LOGGERS:  # after uvicorn configured its loggers
        logger = logging.getLogger(name)
        logger.setLevel(1)
        logger.disabled = False
        logger.addHandler(handler)
    server, thread = serve_in_thread(config)
    try:
        yield f"http://127.0.0.1:{port}", handler
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        for name, (level, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.disabled = disabled


def post(base_url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    # Vapi's base URL is the server root: it appends /chat/completions itself.
    return httpx.post(base_url + "/chat/completions", json=body, timeout=30,
                      headers={"Authorization": "Bearer vapi-key", **headers})


def sse(response: httpx.Response, agent: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    events, _comments = raw_events(response)
    assert events[-1] == "[DONE]" and "[DONE]" not in events[:-1]
    return check_chunks(events[:-1], agent, usage=False)  # Vapi asks for no usage chunk


def assert_no_secrets(handler: Captured, sim_requests: Any) -> None:
    assert len(handler.lines) > 0, "nothing was logged: the capture is not working"
    for secret in SECRETS:
        leaked = [line for line in handler.lines if secret in line]
        assert not leaked, f"{secret!r} reached the logs:\n" + "\n".join(leaked[:5])
    # Unknown fields are ignored: they are not sent upstream either.
    upstream = json.dumps(sim_requests())
    assert not [s for s in SECRETS if s in upstream], "Vapi's call/customer data was forwarded upstream"


def test_vapi_turns_are_answered_and_call_data_never_logged(logged, sim_requests) -> None:
    base_url, handler = logged
    agent = create_agent(base_url)
    first_user = {"role": "user", "content": "Hi, I'd like to check my order."}
    first = sse(post(base_url, vapi_body(agent, [first_user]), sim_headers(reply="Sure, what is the order number?")),
                agent)
    assert first["finish"] == "stop" and first["text"] == "Sure, what is the order number?"
    # Vapi's next request: the whole call so far, its copy of the reply as spoken (trimmed by a barge-in).
    transcript = [first_user, {"role": "assistant", "content": "Sure, what is"},
                  {"role": "user", "content": "It is 4 4 7."}]
    second = sse(post(base_url, vapi_body(agent, transcript), sim_headers(reply="Order 447 ships tomorrow.")), agent)
    assert second["finish"] == "stop" and second["text"] == "Order 447 ships tomorrow."
    stored = history(base_url, agent)
    assert [(m["message_type"], m["content"]) for m in stored] == [
        ("user_message", first_user["content"]), ("assistant_message", "Sure, what is the order number?"),
        ("user_message", "It is 4 4 7."), ("assistant_message", "Order 447 ships tomorrow.")]
    # Vapi's own first message and system prompt are per-request context, not the agent's history.
    calls = upstream_agent_calls(sim_requests())
    assert calls[-1]["messages"][-1] == {"role": "user", "content": "It is 4 4 7."}
    assert calls[-1]["tools"][-1]["function"]["name"] == "endCall"
    assert calls[-1]["max_tokens"] == 250 and calls[-1]["temperature"] == 0.7
    assert_no_secrets(handler, sim_requests)


def test_vapi_end_call_tool_is_streamed_to_vapi(logged, sim_requests) -> None:
    base_url, handler = logged
    agent = create_agent(base_url)
    bye = {"role": "user", "content": "That's all, goodbye."}
    script = [{"reply": "Goodbye!", "content_then_tool_calls": True,
               "tool_calls": [{"name": "endCall", "arguments": {}}]}]
    out = sse(post(base_url, vapi_body(agent, [bye]), sim_headers(script=script)), agent)
    assert out["finish"] == "tool_calls" and out["text"] == "Goodbye!"
    [call] = out["tool_calls"]
    assert call["name"] == "endCall" and json.loads(call["arguments"]) == {}
    # Vapi hangs up and never answers the call; the agent's next conversation still works.
    again = sse(post(base_url, vapi_body(agent, [{"role": "user", "content": "Hello again"}]),
                     sim_headers(reply="Welcome back.")), agent)
    assert again["text"] == "Welcome back."
    upstream = upstream_agent_calls(sim_requests())[-1]["messages"]
    closing = [m for m in upstream if m["role"] == "tool" and m.get("tool_call_id") == call["id"]]
    assert len(closing) == 1, "the unanswered endCall must be closed before the history goes upstream"
    assert [m["content"] for m in history(base_url, agent) if m["message_type"] == "user_message"] == [
        bye["content"], "Hello again"]
    assert_no_secrets(handler, sim_requests)


def test_vapi_upstream_failure_is_an_error_status_and_logs_no_call_data(logged, sim_requests) -> None:
    base_url, handler = logged
    agent = create_agent(base_url)
    response = post(base_url, vapi_body(agent, [{"role": "user", "content": "Are you there?"}]),
                    sim_headers(fail_status=500))
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert_no_secrets(handler, sim_requests)
