"""Assemble what the upstream sees: system prompt, per-request instructions, history, new input.

Stored messages are encoded to JSON once and the bytes kept with the agent (memory/incontext.py), so a
turn with a long history only encodes what is new.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from memory.models import Message
from memory.tokens import TokenCounter, default_counter

if TYPE_CHECKING:
    from memory.agents import LiveAgent


def content_text(content: Any) -> str:
    """The readable text of an OpenAI `content` value: a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces: list[str] = []
        for part in content:
            if isinstance(part, str):
                pieces.append(part)
            elif isinstance(part, Mapping):
                kind = part.get("type")
                if isinstance(part.get("text"), str):
                    pieces.append(part["text"])
                elif kind == "refusal" and isinstance(part.get("refusal"), str):
                    pieces.append(part["refusal"])
                elif kind in ("image_url", "image", "input_image"):
                    pieces.append("[image]")
                elif kind in ("input_audio", "audio"):
                    pieces.append("[audio]")
                elif kind == "file":
                    pieces.append("[file]")
        return "\n".join(pieces)
    return str(content)


TEXT_PART_TYPES = frozenset({"text", "input_text"})


def media_parts(content: Any) -> list[Any] | None:
    """The content as parts when it holds more than text (an image, audio, a file); else None.

    Such a message is stored with its readable text as `content` (what search and summaries read) and
    its parts in `metadata["parts"]` (what the upstream is sent, on this turn and every later one).
    """
    if not isinstance(content, list):
        return None
    if all(isinstance(p, str) or (isinstance(p, Mapping) and p.get("type") in TEXT_PART_TYPES) for p in content):
        return None
    return content


def inline_bytes(content: Any) -> int:
    """Bytes of data carried inline by a content value: data URLs, base64 audio and file data."""
    if not isinstance(content, list):
        return 0
    total = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        if isinstance(url, str) and url.startswith("data:"):
            total += len(url)
        for key, field in (("input_audio", "data"), ("file", "file_data")):
            inner = part.get(key)
            if isinstance(inner, Mapping) and isinstance(inner.get(field), str):
                total += len(inner[field])
    return total


INTERRUPTED_NOTE = "\n[interrupted: the user cut this reply off here and did not hear the rest]"


def wire_message(message: Message) -> dict[str, Any]:
    """A stored message as an OpenAI chat message."""
    parts = message.metadata.get("parts")
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": parts or message.content or ""}
    if message.role == "assistant":
        content = message.content
        if message.metadata.get("interrupted"):
            content = (content or "") + INTERRUPTED_NOTE
        out: dict[str, Any] = {"role": "assistant", "content": content}
        # A refusal goes back as one; reasoning never does (DeepSeek refuses it in input, others ignore it).
        if message.metadata.get("refusal"):
            out["refusal"] = message.metadata["refusal"]
        if message.tool_calls:
            out["tool_calls"] = message.tool_calls
        return out
    out = {"role": message.role, "content": parts or message.content or ""}
    if message.name:
        out["name"] = message.name
    return out


def message_parts(live: LiveAgent, system_prompt: str, instructions: list[dict[str, Any]],
                  counter: TokenCounter | None = None) -> list[bytes | bytearray]:
    """The JSON array of `messages` for the next upstream call, as pieces to join: the agent's cached encodings."""
    parts: list[bytes | bytearray] = [b"[", orjson.dumps({"role": "system", "content": system_prompt})]
    for instruction in instructions:
        parts += (b",", orjson.dumps(instruction))
    joined = live.in_context.joined(live.messages, counter or default_counter())
    if joined:
        parts += (b",", joined)
    parts.append(b"]")
    return parts


def encode_messages(live: LiveAgent, system_prompt: str, instructions: list[dict[str, Any]],
                    counter: TokenCounter | None = None) -> bytes:
    """The JSON array of `messages` for the next upstream call, from the agent's cached encodings."""
    return b"".join(message_parts(live, system_prompt, instructions, counter))


def splice_messages(head_open: bytes, messages: list[bytes | bytearray]) -> list[bytes | memoryview]:
    """A head's JSON without its closing brace, with the messages array spliced in: the body as pieces to send.

    The in-context history (the bytearray memory/incontext.py keeps, ~600 KB at 5,000 messages) goes as a
    read-only view of itself: joining it into one bytes object cost an allocation and a copy of it per
    upstream call. While a view is alive that bytearray cannot grow; InContext copies it then.
    """
    pieces: list[bytes | memoryview] = []
    small: list[bytes | bytearray] = [head_open, b',"messages":']
    for part in messages:
        if isinstance(part, bytearray):
            pieces += (b"".join(small), memoryview(part).toreadonly())
            small = []
        else:
            small.append(part)
    small.append(b"}")
    pieces.append(b"".join(small))
    return pieces


def request_messages(live: LiveAgent, system_prompt: str, instructions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same list as `encode_messages`, as objects (for inspection endpoints)."""
    return [{"role": "system", "content": system_prompt}, *instructions, *(wire_message(m) for m in live.messages)]
