"""Images and audio reach the model on this turn and every later one, and read back as Letta content parts."""

from __future__ import annotations

import base64

import httpx

from helpers import agent_calls, create_agent, sdk

PIXEL = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
AUDIO = base64.b64encode(b"RIFF" + b"\0" * 200).decode()
PARTS = [{"type": "text", "text": "What is in this picture and this clip?"},
         {"type": "image_url", "image_url": {"url": "https://example.org/cat.png", "detail": "low"}},
         {"type": "image_url", "image_url": {"url": PIXEL}},
         {"type": "input_audio", "input_audio": {"data": AUDIO, "format": "wav"}}]


def test_parts_are_sent_upstream_now_and_on_later_turns_and_listed_as_letta_parts(server, sim_requests) -> None:
    agent = create_agent(server.base_url)
    client = sdk(server.base_url)
    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": PARTS}])
    client.chat.completions.create(model=agent, messages=[{"role": "user", "content": "And now?"}])
    first, second = agent_calls(sim_requests)[-2:]
    assert first["messages"][-1] == {"role": "user", "content": PARTS}
    assert second["messages"][-3] == {"role": "user", "content": PARTS}  # then the reply, then the new input

    listed = httpx.get(f"{server.base_url}/v1/agents/{agent}/messages", params={"order": "asc"}).json()
    assert listed[0]["message_type"] == "user_message"
    assert listed[0]["content"] == [
        {"type": "text", "text": "What is in this picture and this clip?"},
        {"type": "image", "source": {"type": "url", "url": "https://example.org/cat.png"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL.split(",", 1)[1],
                                     "detail": None}},
        {"type": "input_audio", "input_audio": {"data": AUDIO, "format": "wav"}}]
    assert listed[2]["content"] == "And now?"  # plain text stays a string

    # The text of the message is what search finds.
    stored = server.call(server.rt.store.list_messages(agent, limit=None))[0]
    assert stored.content.startswith("What is in this picture and this clip?")


def test_a_message_over_the_inline_data_cap_is_413_and_stores_nothing(make_server) -> None:
    srv = make_server(max_inline_bytes=1000)
    agent = create_agent(srv.base_url)
    big = [{"type": "text", "text": "look"},
           {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 2000}}]
    response = httpx.post(f"{srv.base_url}/v1/chat/completions", timeout=20,
                          json={"model": agent, "messages": [{"role": "user", "content": big}]})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "inline_data_too_large"
    assert httpx.get(f"{srv.base_url}/v1/agents/{agent}/messages").json() == []
    # A URL is not inline data: the same picture by reference goes through.
    by_url = [big[0], {"type": "image_url", "image_url": {"url": "https://example.org/big.png"}}]
    ok = httpx.post(f"{srv.base_url}/v1/chat/completions", timeout=20,
                    json={"model": agent, "messages": [{"role": "user", "content": by_url}]})
    assert ok.status_code == 200
