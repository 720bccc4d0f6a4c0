"""Reply planning: which words, tool calls, timings and failures one chat request gets."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.sim.config import SimConfig
from proxy.sim.options import FAILURE_OPTIONS, Markers, SimOptionError

FILLER = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua"
).split()

_PIECE = re.compile(r"\s*\S+")


@dataclass(slots=True)
class ToolCallPlan:
    """One tool call the simulated model makes."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ReplyPlan:
    """Everything the simulated model says in one response."""

    pieces: list[str]
    tool_calls: list[ToolCallPlan]
    ttft_s: float
    token_delay_s: float
    prompt_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces) + sum(1 + max(1, len(c.arguments) // 4) for c in self.tool_calls)


@dataclass(slots=True)
class Failure:
    """An injected failure for one request."""

    status: int | None
    after_chunks: int | None
    stall_s: float
    retry_after_s: float | None
    stall_after: int | None = None  # stall mid-body (after this many chunks) instead of before the response


class FailureBudget:
    """Counts injected failures per `key`, so `fail_times` lets later retries through."""

    def __init__(self) -> None:
        self._used: dict[str, int] = {}

    def take(self, options: dict[str, Any]) -> Failure | None:
        """The failure this request should suffer, or None."""
        if not any(k in options for k in FAILURE_OPTIONS):
            return None
        limit = options.get("fail_times")
        if limit is not None:
            key = options.get("key", "")
            used = self._used.get(key, 0)
            if used >= limit:
                return None
            self._used[key] = used + 1
        return Failure(
            status=options.get("fail_status"),
            after_chunks=options.get("fail_after_chunks"),
            stall_s=options.get("stall_ms", 0.0) / 1000.0,
            retry_after_s=options.get("retry_after", 1.0 if options.get("fail_status") == 429 else None),
            stall_after=options.get("stall_after_chunks"),
        )

    def clear(self) -> None:
        self._used.clear()


def content_text(content: Any) -> str:
    """The text of a message's `content`, whether a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def message_chars(messages: list[Any]) -> int:
    """Characters of message text and tool-call JSON: the basis of the rough token count."""
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        total += len(content) if isinstance(content, str) else len(content_text(content))
        for call in message.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            function = call.get("function") or {}
            total += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    return total


def prompt_estimate(messages: list[Any], tools: Any) -> int:
    """The simulator's prompt size: message text plus tool schemas, about four characters a token.

    One count serves both the reported usage and the context-length check, as a real model's does.
    """
    return (message_chars(messages) + (len(orjson.dumps(tools)) if tools else 0)) // 4


def last_user_index(messages: list[Any]) -> int:
    """Index of the last `user` message, or -1."""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, dict) and message.get("role") == "user":
            return i
    return -1


def split_pieces(text: str) -> list[str]:
    """Word chunks, each carrying its leading whitespace, that concatenate back to `text`."""
    pieces = _PIECE.findall(text)
    if not pieces:
        return [text] if text else []
    tail = len(text) - sum(map(len, pieces))
    if tail:
        pieces[-1] += text[-tail:]
    return pieces


def echo_pieces(user_text: str, reply_tokens: int) -> list[str]:
    """The default reply: `Echo:` plus the user's first words, padded with filler."""
    reply_tokens = max(0, reply_tokens)
    words = ["Echo:", *user_text.split()][:reply_tokens]
    i = 0
    while len(words) < reply_tokens:
        words.append(FILLER[i % len(FILLER)])
        i += 1
    return [w if n == 0 else " " + w for n, w in enumerate(words)]


def _tool_calls(raw: Any, salt: str) -> list[ToolCallPlan]:
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise SimOptionError("tool_calls must be a list of {name, arguments}")
    calls = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SimOptionError("each tool call needs a string 'name'")
        args = item.get("arguments", {})
        args_text = args if isinstance(args, str) else orjson.dumps(args).decode()
        # Deterministic ids that still differ between calls and between steps of one turn.
        digest = hashlib.blake2b(f"{salt}:{index}:{item['name']}:{args_text}".encode(), digest_size=12)
        calls.append(ToolCallPlan("call_" + digest.hexdigest(), item["name"], args_text or "{}"))
    return calls


def _step_output(step: Any, default: list[str], salt: str) -> tuple[list[str], list[ToolCallPlan]]:
    if isinstance(step, str):
        return split_pieces(step), []
    if not isinstance(step, dict):
        raise SimOptionError("each script step must be an object or a string")
    reply = split_pieces(str(step["reply"])) if "reply" in step else default
    if "tool_calls" not in step:
        return reply, []
    calls = _tool_calls(step["tool_calls"], salt)
    return (reply if step.get("content_then_tool_calls") else []), calls


def plan_reply(
    body: dict[str, Any], messages: list[Any], options: dict[str, Any], markers: Markers, config: SimConfig
) -> ReplyPlan:
    """Decide the response for one chat request."""
    user_at = last_user_index(messages)
    step_index = sum(
        1 for m in messages[user_at + 1:] if isinstance(m, dict) and m.get("role") == "assistant"
    )
    default = echo_pieces(markers.text, options.get("reply_tokens", config.reply_tokens))
    salt = f"{len(messages)}:{step_index}"
    pieces: list[str] = default
    calls: list[ToolCallPlan] = []
    if "script" in options:
        script = options["script"]
        if not isinstance(script, list):
            raise SimOptionError("script must be a list of steps")
        if step_index < len(script):
            pieces, calls = _step_output(script[step_index], default, salt)
    elif "tool_calls" in options or "reply" in options:
        pieces, calls = _step_output(options, default, salt)
    elif markers.calls and body.get("tools") and step_index == 0:
        pieces, calls = [], _tool_calls([{"name": n, "arguments": a} for n, a in markers.calls], salt)
    return ReplyPlan(
        pieces=pieces,
        tool_calls=calls,
        ttft_s=options.get("ttft_ms", config.ttft_ms) / 1000.0,
        token_delay_s=options.get("token_delay_ms", config.token_delay_ms) / 1000.0,
        prompt_tokens=max(1, prompt_estimate(messages, body.get("tools"))),
    )
