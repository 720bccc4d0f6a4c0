"""Turns over HTTP on the embedded backend's turn journal: acknowledged from it, readable at once, and a
journal that cannot be written fails its turn cleanly (the disk is made full under the running server)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from helpers import ON_POSTGRES, create_agent, raw_events

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="the turn journal is the embedded backend's")


def chat(base_url: str, agent_id: str, text: str, *, stream: bool = False) -> httpx.Response:
    return httpx.post(base_url + "/v1/chat/completions", timeout=30,
                      json={"model": agent_id, "stream": stream, "messages": [{"role": "user", "content": text}]})


def contents(base_url: str, agent_id: str) -> list[str]:
    response = httpx.get(f"{base_url}/v1/agents/{agent_id}/messages", params={"limit": 100}, timeout=10)
    assert response.status_code == 200, response.text
    texts: list[str] = []
    for message in response.json():
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
    return texts


def fill_the_disk(server: Any) -> None:
    """From now on every journal write fails with ENOSPC, as on a full disk."""
    journal = server.rt.store._journal
    assert journal is not None
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, journal._fd)
    finally:
        os.close(full)


def test_turns_sent_one_at_a_time_share_transactions_and_are_read_back_at_once(
        make_server: Callable[..., Any]) -> None:
    server = make_server()
    agent = create_agent(server.base_url)
    store = server.rt.store
    before = store.commit_transactions
    for i in range(10):
        assert chat(server.base_url, agent, f"journaled {i}").status_code == 200
    assert store._journal.syncs >= 10  # each turn synced before its answer
    texts = contents(server.base_url, agent)  # the read applies what is waiting first
    assert sorted(t for t in texts if t.startswith("journaled")) == [f"journaled {i}" for i in range(10)]
    assert store.commit_transactions - before <= 3  # one per turn without the journal


@pytest.mark.parametrize("stream", [False, True])
def test_a_journal_that_cannot_be_written_fails_that_turn_and_keeps_nothing_of_it(
        make_server: Callable[..., Any], stream: bool) -> None:
    server = make_server()
    agent = create_agent(server.base_url)
    assert chat(server.base_url, agent, "before the disk filled").status_code == 200
    fill_the_disk(server)

    failed = chat(server.base_url, agent, "lost to a full disk", stream=stream)
    if stream:
        assert failed.status_code == 200  # the reply had started: the stream ends with an error event
        events, _ = raw_events(failed)
        assert events[-1] == "[DONE]"
        assert any(isinstance(e, dict) and "error" in e for e in events), events
    else:
        assert failed.status_code == 503, failed.text
        assert failed.json()["error"]["type"] == "server_error"
    assert "lost to a full disk" not in contents(server.base_url, agent)

    after = chat(server.base_url, agent, "after the disk filled")  # straight to the tables now
    assert after.status_code == 200, after.text
    texts = contents(server.base_url, agent)
    assert "before the disk filled" in texts and "after the disk filled" in texts
    assert "lost to a full disk" not in texts
