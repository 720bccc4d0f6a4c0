"""What the client was told was done, and the check, after a restart, that it is still there.

Definitions the crash suite holds memproxy to:
- An acknowledged turn (the client got `data: [DONE]` or the 200 of `stream: false`) is stored whole: its
  user message, and its final assistant message with the reply the client saw, under one completed run.
- A turn is never half-written, acknowledged or not (a SIGKILL mid-stream or between tool steps leaves
  no chance to mark anything interrupted): the messages of every stored run start with the user's
  message, end with an assistant reply, answer every tool call they make, and the run is stored as
  completed. A turn the client never saw finish may be absent, or whole; nothing in between.
- An acknowledged edit is still there: the text a memory tool added once its result ("Memory block
  `x` updated") went back to the model, and every management write that answered 2xx.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx


@dataclass
class Turn:
    agent: str
    text: str  # the user message; unique in the suite
    reply: str  # the final assistant message
    acked: bool


@dataclass
class Edit:
    agent: str
    label: str
    needle: str  # text the block must contain


@dataclass
class Write:
    what: str
    check: Callable[[httpx.Client], bool]


@dataclass
class Findings:
    turns_lost: list[str] = field(default_factory=list)
    edits_lost: list[str] = field(default_factory=list)
    half_turns: list[str] = field(default_factory=list)

    def extend(self, other: Findings) -> None:
        self.turns_lost += other.turns_lost
        self.edits_lost += other.edits_lost
        self.half_turns += other.half_turns

    def __bool__(self) -> bool:
        return bool(self.turns_lost or self.edits_lost or self.half_turns)


class Ledger:
    """Everything acknowledged so far in one series; `verify` checks it all and forgets what it found lost."""

    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.edits: list[Edit] = []
        self.writes: dict[str, Write] = {}
        self._judged_runs: set[str] = set()

    def turn(self, agent: str, text: str, reply: str, acked: bool) -> None:
        self.turns.append(Turn(agent, text, reply, acked))

    def edit(self, agent: str, label: str, needle: str, *, replaces: bool = False) -> None:
        if replaces:  # a rewrite of the whole block makes earlier needles in it stale
            self.edits = [e for e in self.edits if (e.agent, e.label) != (agent, label)]
        self.edits.append(Edit(agent, label, needle))

    def write(self, target: str, what: str, check: Callable[[httpx.Client], bool]) -> None:
        """A management write that answered 2xx; a later write to the same target supersedes it."""
        self.writes[target] = Write(what, check)

    @property
    def acked_turns(self) -> int:
        return sum(t.acked for t in self.turns)

    def verify(self, http: httpx.Client) -> Findings:
        found = Findings()
        agents = sorted({t.agent for t in self.turns} | {e.agent for e in self.edits})
        for agent in agents:
            self._verify_turns(http, agent, found)
        kept: list[Edit] = []
        values: dict[tuple[str, str], str] = {}
        for edit in self.edits:
            key = (edit.agent, edit.label)
            if key not in values:
                values[key] = _ok(http.get(f"/v1/agents/{edit.agent}/core-memory/blocks/{edit.label}"))["value"]
            if edit.needle in values[key]:
                kept.append(edit)
            else:
                found.edits_lost.append(f"block {edit.label!r} of {edit.agent} lacks {edit.needle!r}")
        self.edits = kept
        for target, write in list(self.writes.items()):
            if not write.check(http):
                found.edits_lost.append(f"management write lost: {write.what}")
                del self.writes[target]
        return found

    def _verify_turns(self, http: httpx.Client, agent: str, found: Findings) -> None:
        messages = _ok(http.get(f"/v1/agents/{agent}/messages", params={"limit": 10000, "order": "asc"}))
        runs = {r["id"]: r for r in _ok(http.get("/v1/runs", params={"agent_id": agent, "limit": 10000}))}
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in messages:
            if message.get("run_id"):
                groups[message["run_id"]].append(message)
        for run_id, group in groups.items():
            if run_id in self._judged_runs:
                continue
            self._judged_runs.add(run_id)
            problem = half_written(group, runs.get(run_id))
            if problem:
                found.half_turns.append(f"run {run_id} of {agent}: {problem}")
        for run_id, run in runs.items():
            if run_id not in groups and run_id not in self._judged_runs:
                self._judged_runs.add(run_id)
                found.half_turns.append(f"run {run_id} of {agent} ({run['status']}) is stored without messages")
        kept: list[Turn] = []
        for turn in self.turns:
            if turn.agent != agent:
                kept.append(turn)
                continue
            users = [m for m in messages if m["message_type"] == "user_message" and m["content"] == turn.text]
            if len(users) > 1:
                found.half_turns.append(f"turn {turn.text!r} is stored {len(users)} times")
            if not users:
                if turn.acked:
                    found.turns_lost.append(f"acknowledged turn {turn.text!r} of {agent} is gone")
                    continue
                kept.append(turn)
                continue
            group = groups.get(users[0].get("run_id") or "", [])
            replies = [m["content"] for m in group if m["message_type"] == "assistant_message"]
            if turn.acked and (not replies or replies[-1] != turn.reply):
                found.turns_lost.append(f"acknowledged turn {turn.text!r} of {agent}: reply {replies[-1:]} "
                                        f"stored, {turn.reply!r} sent")
                continue
            kept.append(turn)
        self.turns = kept


def half_written(group: list[dict[str, Any]], run: dict[str, Any] | None) -> str | None:
    """Why the stored messages of one run are not a whole turn, or None when they are."""
    kinds = [m["message_type"] for m in group]
    if run is None:
        return f"messages {kinds} without their run"
    if run["status"] != "completed":
        return f"run status {run['status']!r}"
    if not kinds or kinds[0] != "user_message":
        return f"does not start with the user's message: {kinds}"
    if kinds[-1] != "assistant_message":
        return f"does not end with an assistant reply: {kinds}"
    calls = {m["tool_call"]["tool_call_id"] for m in group if m["message_type"] == "tool_call_message"}
    returns = {m["tool_call_id"] for m in group if m["message_type"] == "tool_return_message"}
    if calls != returns:
        return f"tool calls {sorted(calls)} answered by {sorted(returns)}"
    return None


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, f"{response.request.method} {response.request.url}: " \
                                        f"{response.status_code} {response.text[:300]}"
    return response.json()
