"""Idempotent retries: a repeated request replays (or joins) the turn it repeats instead of running a new one.

Voice clients retry when the first byte is slow and SDKs retry on network errors; either way the
agent must not hear the user twice. A turn is identified by the client's idempotency header when
it sends one, else by a digest of what the agent acts on: the new input, and where in the conversation
it comes (the answer it follows and the transcript's length), never the whole transcript.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, AsyncIterator

import orjson

from proxy.chat.new_input import NewInput
from proxy.chat.protocol import ChatRequest
from proxy.errors import APIError
from proxy.protocols import TurnSink

IDEMPOTENCY_HEADERS = ("idempotency-key", "x-idempotency-key", "x-request-id")


def turn_key(chat: ChatRequest, headers: Mapping[str, str], new_input: NewInput) -> tuple[str, float]:
    """(key, seconds a finished turn may be replayed for it).

    An explicit key replays for ten minutes. A repeated transcript (one that carries an assistant
    message) replays for a minute: a genuinely new turn would include the previous answer. A bare
    message repeated after its turn finished may be meant ("yes", "yes"), so it only joins a turn
    still in flight.

    Without a key, the digest covers what the turn acts on (the new input after the last answer, the
    instructions, the client's tools) and a stamp of where the request stands in the conversation: the
    transcript's length and the answer the new input follows. The agent keeps its own history, so older
    messages the client resends change nothing the turn does; hashing them made a turn's bookkeeping grow
    with the transcript. The same words after a new answer, or at another length, are a new turn.
    """
    for name in IDEMPOTENCY_HEADERS:
        value = headers.get(name)
        if value:
            return "key:" + value, 600.0
    messages = chat.messages
    follows = new_input.last_assistant
    stamp = [len(messages), messages[follows] if follows >= 0 else None]
    digest = hashlib.blake2b(orjson.dumps([chat.model, chat.tools, new_input.instructions, messages[follows + 1:],
                                           stamp], option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()
    return "body:" + digest, 60.0 if follows >= 0 else 0.0


class TurnRecord:
    """Every event a turn sent its sink, so later requests can replay or follow it."""

    def __init__(self, key: str, ttl: float) -> None:
        self.key = key
        self.ttl = ttl
        self.expires: float | None = None  # set when the turn finishes
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self.done = False
        self.run_id: str | None = None  # the run of the turn being recorded
        self._changed: asyncio.Future[None] | None = None

    def add(self, name: str, args: tuple[Any, ...]) -> None:
        if name in ("finish", "error"):
            self.done = True
            self.expires = time.monotonic() + self.ttl
        self.note(name, args)

    def note(self, name: str, args: tuple[Any, ...]) -> None:
        """`add` for an event that does not end the turn (content and deltas: one per token)."""
        self.events.append((name, args))
        changed = self._changed
        if changed is not None:
            if not changed.done():
                changed.set_result(None)
            self._changed = None

    def close(self) -> None:
        """The turn ended without a finish (cancelled): followers stop too."""
        if not self.done:
            self.add("error", (None,))

    async def follow(self) -> AsyncIterator[tuple[str, tuple[Any, ...]]]:
        index = 0
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.done:
                return
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)


class RecordingSink:
    """Forwards turn events to the requester's sink and records them for retries."""

    def __init__(self, inner: TurnSink, record: TurnRecord) -> None:
        self.inner = inner
        self.record = record

    def _both(self, name: str, *args: Any) -> None:
        self.record.add(name, args)
        getattr(self.inner, name)(*args)

    def accepted(self) -> None:
        self._both("accepted")

    def content(self, text: str) -> None:
        self.record.note("content", (text,))  # per token: no dispatch by name
        self.inner.content(text)

    def relay(self, delta: dict[str, Any], logprobs: Any) -> None:
        self.record.note("relay", (delta, logprobs))
        self.inner.relay(delta, logprobs)

    def fingerprint(self, value: str) -> None:
        self._both("fingerprint", value)

    def tool_call_start(self, index: int, call_id: str, name: str) -> None:
        self._both("tool_call_start", index, call_id, name)

    def tool_call_arguments(self, index: int, fragment: str) -> None:
        self._both("tool_call_arguments", index, fragment)

    def working(self) -> None:
        self.inner.working()

    def server_tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self._both("server_tool_call", call_id, name, arguments)

    def tool_return(self, call_id: str, name: str, text: str, ok: bool) -> None:
        self._both("tool_return", call_id, name, text, ok)

    def finish(self, reason: str, usage: dict[str, Any]) -> None:
        self._both("finish", reason, usage)

    def error(self, error: APIError) -> None:
        self._both("error", error)


class RecentTurns:
    """The last few turns per agent, by key, for the most recently active agents.

    Bounded twice: `per_agent` records per agent, and `max_agents` agents (the least recently active
    one's records go first). Finished records past their replay window are dropped whenever the agent
    starts another turn, so an agent that is only sent fresh messages keeps none.
    """

    def __init__(self, per_agent: int = 16, max_agents: int = 4096) -> None:
        self.per_agent = per_agent
        self.max_agents = max_agents
        self._by_agent: OrderedDict[str, OrderedDict[str, TurnRecord]] = OrderedDict()

    def find(self, agent_id: str, key: str) -> TurnRecord | None:
        records = self._by_agent.get(agent_id)
        if not records:
            return None
        record = records.get(key)
        if record is None:
            return None
        # A failed or cancelled turn is not replayed: the retry deserves a fresh attempt.
        finished_long_ago = record.expires is not None and record.expires < time.monotonic()
        if finished_long_ago or (record.done and record.events[-1][0] == "error"):
            del records[key]
            return None
        return record

    def start(self, agent_id: str, key: str, ttl: float) -> TurnRecord:
        records = self._by_agent.get(agent_id)
        if records is None:
            records = self._by_agent[agent_id] = OrderedDict()
        else:
            self._by_agent.move_to_end(agent_id)
            now = time.monotonic()
            for old in [k for k, r in records.items() if r.expires is not None and r.expires < now]:
                del records[old]
        record = records[key] = TurnRecord(key, ttl)
        records.move_to_end(key)
        while len(records) > self.per_agent:
            records.popitem(last=False)
        while len(self._by_agent) > self.max_agents:
            self._by_agent.popitem(last=False)
        return record

    def forget_agent(self, agent_id: str) -> None:
        self._by_agent.pop(agent_id, None)

    def __len__(self) -> int:
        """Records held, over all agents."""
        return sum(len(records) for records in self._by_agent.values())


async def replay(record: TurnRecord, sink: TurnSink) -> None:
    """Feed a recorded (or still running) turn into a new requester's sink."""
    async for name, args in record.follow():
        if name == "error" and args == (None,):
            sink.error(APIError(503, "the request this one repeats was cancelled before it finished; send it again",
                                code="turn_cancelled"))
            return
        getattr(sink, name)(*args)
