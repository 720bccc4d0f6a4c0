"""The context-window budget: when to evict, and how many of the oldest messages to evict.

Pure functions over `(message_id, openai_message, token_count)` triples, oldest first. The system
prompt, tool schemas, the summary message and the new input are not in that list; their tokens come
in as `fixed_tokens`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NamedTuple

DEFAULT_EVICT_FRACTION = 0.30
DEFAULT_HIGH_WATER_MARK = 0.75
REPLY_RESERVE_CAP = 4096
REPLY_RESERVE_SHARE = 0.25


class WindowMessage(NamedTuple):
    """One in-context message as the planner sees it; a plain 3-tuple works too."""

    message_id: str
    message: Mapping[str, Any]
    tokens: int


@dataclass(frozen=True, slots=True)
class EvictionPlan:
    """Evict `msgs[:evict_count]`; `remaining_tokens` counts the kept messages only (no fixed part)."""

    evict_count: int
    evicted_tokens: int
    remaining_tokens: int
    fits: bool


def reply_reserve(window: int, *, cap: int = REPLY_RESERVE_CAP, share: float = REPLY_RESERVE_SHARE) -> int:
    """Tokens to keep free for the model's reply: `share` of the window, at most `cap`."""
    return max(0, min(cap, int(window * share)))


def needs_eviction(total: int, window: int, reserve: int) -> bool:
    """True when a prompt of `total` tokens leaves less than `reserve` tokens for the reply."""
    return total > window - reserve


def past_high_water(total: int, window: int, mark: float = DEFAULT_HIGH_WATER_MARK) -> bool:
    """True when `total` fills more than `mark` of the window: time to summarize ahead of need."""
    return total > window * mark


def safe_cut_points(msgs: Sequence[tuple[str, Mapping[str, Any], int]]) -> list[int]:
    """Every index `i` in 1..len(msgs) where evicting `msgs[:i]` leaves no tool call or result orphaned.

    A cut is unsafe if it falls between an assistant message carrying tool calls and any of their
    results, or leaves a tool result at the head of the kept history (its call would be gone).
    """
    n = len(msgs)
    # blocked[i] marks the cut at i as unsafe; a bytearray because this runs on every eviction.
    blocked = bytearray(n + 1)
    call_positions: dict[str, int] = {}
    for index, (_, msg, _) in enumerate(msgs):
        role = msg.get("role")
        if role == "tool":
            blocked[index] = 1
            start = call_positions.get(msg.get("tool_call_id") or "")
            if start is not None:
                blocked[start + 1 : index + 1] = b"\x01" * (index - start)
        elif role == "assistant":
            tool_calls = msg.get("tool_calls")
            if tool_calls:
                for call in tool_calls:
                    call_id = call.get("id")
                    if call_id:
                        call_positions[call_id] = index
    return [cut for cut in range(1, n + 1) if not blocked[cut]]


def turn_boundaries(msgs: Sequence[tuple[str, Mapping[str, Any], int]]) -> list[int]:
    """Indices of the `user` messages that start a turn, where an eviction cut may fall.

    A user message wedged inside a tool call/result pair is not a boundary: cutting there would
    separate the call from its result.
    """
    if not msgs:
        return []
    boundaries = [0] if msgs[0][1].get("role") == "user" else []
    boundaries.extend(_user_cuts(msgs, safe_cut_points(msgs)))
    return boundaries


def _user_cuts(msgs: Sequence[tuple[str, Mapping[str, Any], int]], safe: list[int]) -> list[int]:
    n = len(msgs)
    return [cut for cut in safe if cut < n and msgs[cut][1].get("role") == "user"]


def plan_eviction(
    msgs: Sequence[tuple[str, Mapping[str, Any], int]],
    *,
    fixed_tokens: int,
    window: int,
    reserve: int,
    fraction: float = DEFAULT_EVICT_FRACTION,
    must_fit: bool = True,
) -> EvictionPlan:
    """How many of the oldest messages to evict.

    Evicts at least `fraction` of the message tokens, rounded up to the next turn boundary; with
    `must_fit`, keeps evicting whole turns until `fixed_tokens` plus the rest fit `window - reserve`.
    The last turn is never evicted; if it alone does not fit, everything before it goes and
    `fits` is False. With no turn boundary at all (one long tool loop), the same rules pick among
    the safe points inside that turn, short of evicting its newest message.
    """
    if window <= 0:
        raise ValueError("window must be positive")
    if reserve < 0:
        raise ValueError("reserve must not be negative")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be within [0, 1]")

    budget = window - reserve - fixed_tokens
    prefix = [0, *accumulate(tokens for _, _, tokens in msgs)]
    total = prefix[-1]
    n = len(msgs)

    safe = safe_cut_points(msgs)
    cuts = _user_cuts(msgs, safe)
    if not cuts:
        # One long turn: any safe point except "evict everything" may serve as the cut.
        cuts = [cut for cut in safe if cut < n]
    cuts.insert(0, 0)

    required = fraction * total
    if must_fit:
        required = max(required, total - budget)
    if required <= 0:
        cut = 0
    else:
        evictable = [prefix[c] for c in cuts]
        position = bisect_left(evictable, required)
        cut = cuts[min(position, len(cuts) - 1)]

    evicted = prefix[cut]
    remaining = total - evicted
    return EvictionPlan(evict_count=cut, evicted_tokens=evicted, remaining_tokens=remaining,
                        fits=remaining <= budget)
