"""Letta's background mode through Letta's own Python SDK, strictly validated: seq_id-numbered chunks, runs.stream."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from letta_client import BadRequestError, Letta

from helpers import create_agent, sim_headers
from sse import ids, parse

MEMORY_EDIT = {"name": "memory_insert", "arguments": {"label": "human", "new_str": "Likes tea."}}
SCRIPT = [{"reply": "Noting that.", "content_then_tool_calls": True, "tool_calls": [MEMORY_EDIT]},
          {"reply": "Noted: you like tea, and many other things besides.", "token_delay_ms": 5}]


def letta(server: Any) -> Letta:
    return Letta(base_url=server.base_url, api_key="unused", max_retries=0, _strict_response_validation=True,
                 default_headers=sim_headers(script=SCRIPT))


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
def test_background_stream_is_numbered_and_runs_stream_resumes_it(resumable_server: Any) -> None:
    server = resumable_server()
    client = letta(server)
    agent = create_agent(server.base_url)
    seen = []
    stream = client.agents.messages.stream(agent, messages=[{"role": "user", "content": "I like tea."}],
                                           background=True, stream_tokens=True)
    for chunk in stream:
        seen.append(chunk)
        if len(seen) == 3:
            break
    stream.close()
    run_id = seen[0].run_id
    assert run_id and all(c.run_id == run_id for c in seen)
    assert [c.seq_id for c in seen] == [1, 2, 3]
    rest = list(client.runs.messages.stream(run_id, starting_after=3))
    assert [c.seq_id for c in rest] == list(range(4, 4 + len(rest)))
    types = [c.message_type for c in seen + rest]
    assert "tool_call_message" in types and "tool_return_message" in types
    assert types[-2:] == ["stop_reason", "usage_statistics"]
    whole = list(client.runs.messages.stream(run_id, starting_after=0, batch_size=2, include_pings=True))
    assert [c.model_dump() for c in whole] == [c.model_dump() for c in seen + rest]
    answer = "".join(c.content for c in whole if c.message_type == "assistant_message")
    assert answer.endswith("Noted: you like tea, and many other things besides.")
    # The same log read raw: SSE ids match seq_id, and it ends with [DONE].
    raw = parse(httpx.get(f"{server.base_url}/v1/runs/{run_id}/stream", timeout=30).text)
    assert ids(raw) == list(range(1, len(whole) + 2)) and raw[-1][1] == "[DONE]"
    assert [e["seq_id"] for _, e in raw[:-1]] == ids(raw)[:-1]
    assert client.runs.retrieve(run_id).status == "completed"


def test_background_needs_the_stream_route_and_redis(resumable_server: Any, make_server: Any) -> None:
    server = resumable_server()
    client = letta(server)
    agent = create_agent(server.base_url)
    with pytest.raises(BadRequestError) as refused:
        client.agents.messages.create(agent, messages=[{"role": "user", "content": "hi"}], background=True)
    assert refused.value.body["error"]["param"] == "background"  # type: ignore[index]
    plain = make_server()
    other = create_agent(plain.base_url)
    response = httpx.post(f"{plain.base_url}/v1/agents/{other}/messages/stream", timeout=30,
                          json={"messages": [{"role": "user", "content": "hi"}], "background": True})
    assert response.status_code == 400 and response.json()["error"]["code"] == "resumable_unavailable"
    assert httpx.get(f"{plain.base_url}/v1/agents/{other}/messages", timeout=10).json() == []


def test_an_async_run_is_followed_by_runs_stream(resumable_server: Any) -> None:
    server = resumable_server()
    client = letta(server)
    agent = create_agent(server.base_url)
    run = client.agents.messages.create_async(agent, messages=[{"role": "user", "content": "I like tea."}])
    followed = list(client.runs.messages.stream(run.id, starting_after=0))
    assert [c.seq_id for c in followed] == list(range(1, len(followed) + 1))
    assert [c.message_type for c in followed] == ["assistant_message", "tool_call_message", "tool_return_message",
                                                 "assistant_message", "stop_reason", "usage_statistics"]
    assert client.runs.retrieve(run.id).status == "completed"
