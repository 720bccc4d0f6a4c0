from __future__ import annotations

from typing import Any

import pytest

from memory.window import (
    EvictionPlan,
    WindowMessage,
    needs_eviction,
    past_high_water,
    plan_eviction,
    reply_reserve,
    safe_cut_points,
    turn_boundaries,
)

Msg = tuple[str, dict[str, Any], int]


class Transcript:
    """Builds planner input: (id, OpenAI message, tokens) triples in order."""

    def __init__(self) -> None:
        self.msgs: list[Msg] = []
        self._calls = 0

    def _add(self, msg: dict[str, Any], tokens: int) -> None:
        self.msgs.append((f"message-{len(self.msgs)}", msg, tokens))

    def user(self, tokens: int = 10) -> Transcript:
        self._add({"role": "user", "content": "u"}, tokens)
        return self

    def assistant(self, tokens: int = 10) -> Transcript:
        self._add({"role": "assistant", "content": "a"}, tokens)
        return self

    def tool_round(self, calls: int = 1, call_tokens: int = 10, result_tokens: int = 10) -> Transcript:
        ids = []
        for _ in range(calls):
            self._calls += 1
            ids.append(f"call_{self._calls}")
        tool_calls = [{"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ids]
        self._add({"role": "assistant", "content": None, "tool_calls": tool_calls}, call_tokens)
        for i in ids:
            self._add({"role": "tool", "tool_call_id": i, "content": "r"}, result_tokens)
        return self

    def turn(self, tokens: int = 10, tool_rounds: int = 0) -> Transcript:
        self.user(tokens)
        for _ in range(tool_rounds):
            self.tool_round(call_tokens=tokens, result_tokens=tokens)
        return self.assistant(tokens)


def assert_no_orphans(msgs: list[Msg], cut: int) -> None:
    """The kept part must hold every result of each call it keeps, and every call of each result."""
    evicted_calls = {c["id"] for _, m, _ in msgs[:cut] for c in m.get("tool_calls") or ()}
    kept_calls = {c["id"] for _, m, _ in msgs[cut:] for c in m.get("tool_calls") or ()}
    evicted_results = {m["tool_call_id"] for _, m, _ in msgs[:cut] if m.get("role") == "tool"}
    kept_results = {m["tool_call_id"] for _, m, _ in msgs[cut:] if m.get("role") == "tool"}
    assert not (kept_results & evicted_calls), "kept a result whose call was evicted"
    assert not (evicted_results & kept_calls), "evicted a result whose call was kept"
    if cut < len(msgs):
        assert msgs[cut][1]["role"] != "tool"


# --- thresholds -------------------------------------------------------------------------------


def test_reply_reserve() -> None:
    assert reply_reserve(128_000) == 4096
    assert reply_reserve(8192) == 2048
    assert reply_reserve(8192, cap=1000) == 1000
    assert reply_reserve(100_000, share=0.01) == 1000


def test_needs_eviction() -> None:
    assert not needs_eviction(6000, 8192, 2048)
    assert not needs_eviction(6144, 8192, 2048)
    assert needs_eviction(6145, 8192, 2048)


def test_past_high_water() -> None:
    assert not past_high_water(750, 1000)
    assert past_high_water(751, 1000)
    assert past_high_water(501, 1000, mark=0.5)


# --- boundaries -------------------------------------------------------------------------------


def test_turn_boundaries_simple() -> None:
    t = Transcript().turn().turn().turn()
    assert turn_boundaries(t.msgs) == [0, 2, 4]


def test_turn_boundaries_with_tool_rounds_and_leading_assistant() -> None:
    t = Transcript().assistant().turn(tool_rounds=2).turn()
    # assistant greeting, user@1, call@2, tool@3, call@4, tool@5, assistant@6, user@7, assistant@8
    assert turn_boundaries(t.msgs) == [1, 7]


def test_turn_boundaries_skip_user_inside_a_tool_pair() -> None:
    t = Transcript().user()
    t.msgs.append(("c", {"role": "assistant", "tool_calls": [{"id": "x", "function": {"name": "f"}}]}, 10))
    t.user()  # e.g. the client interrupted before sending the tool result
    t.msgs.append(("r", {"role": "tool", "tool_call_id": "x", "content": "late"}, 10))
    t.user()
    assert turn_boundaries(t.msgs) == [0, 4]


def test_turn_boundaries_empty() -> None:
    assert turn_boundaries([]) == []
    assert safe_cut_points([]) == []


def test_safe_cut_points_never_split_parallel_calls() -> None:
    t = Transcript().user().tool_round(calls=3).assistant()
    # user@0, call@1, results@2-4, assistant@5
    assert safe_cut_points(t.msgs) == [1, 5, 6]


def test_unanswered_call_does_not_block_later_cuts() -> None:
    t = Transcript().user()
    t.msgs.append(("c", {"role": "assistant", "tool_calls": [{"id": "lost", "function": {"name": "f"}}]}, 10))
    t.turn().turn()
    assert turn_boundaries(t.msgs) == [0, 2, 4]


# --- planning ---------------------------------------------------------------------------------


def test_plan_empty() -> None:
    plan = plan_eviction([], fixed_tokens=100, window=1000, reserve=100)
    assert plan == EvictionPlan(evict_count=0, evicted_tokens=0, remaining_tokens=0, fits=True)
    assert not plan_eviction([], fixed_tokens=950, window=1000, reserve=100).fits


def test_plan_fraction_rounds_up_to_turn_boundary() -> None:
    t = Transcript()
    for _ in range(10):
        t.turn(tokens=50)  # 100 tokens per turn
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=10_000, reserve=0, fraction=0.30)
    assert plan.evict_count == 6
    assert plan.evicted_tokens == 300
    assert plan.remaining_tokens == 700
    assert plan.fits


def test_plan_fraction_rounds_up_not_down() -> None:
    t = Transcript()
    for _ in range(10):
        t.turn(tokens=50)
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=10_000, reserve=0, fraction=0.31)
    assert plan.evicted_tokens == 400 and plan.evict_count == 8


def test_plan_fraction_is_roughly_thirty_percent_on_uneven_turns() -> None:
    t = Transcript()
    sizes = [7, 40, 13, 90, 5, 60, 22, 31, 80, 11, 45, 19, 70, 9, 33]
    for size in sizes:
        t.turn(tokens=size, tool_rounds=size % 3)
    total = sum(tokens for _, _, tokens in t.msgs)
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=100_000, reserve=0)
    assert plan.evicted_tokens >= 0.30 * total
    # Rounded up by less than one turn.
    assert plan.evicted_tokens < 0.30 * total + max(sum(x for _, _, x in t.msgs[s:e]) for s, e in _turn_spans(t.msgs))
    assert t.msgs[plan.evict_count][1]["role"] == "user"
    assert_no_orphans(t.msgs, plan.evict_count)


def _turn_spans(msgs: list[Msg]) -> list[tuple[int, int]]:
    starts = turn_boundaries(msgs)
    return list(zip(starts, [*starts[1:], len(msgs)], strict=True))


def test_plan_must_fit_keeps_evicting_turns() -> None:
    t = Transcript()
    for _ in range(10):
        t.turn(tokens=50)
    # 1000 tokens of history, 200 fixed, room for 500 messages: 30% is not enough.
    plan = plan_eviction(t.msgs, fixed_tokens=200, window=1000, reserve=300)
    assert plan.evict_count == 10
    assert plan.evicted_tokens == 500
    assert plan.remaining_tokens == 500
    assert plan.fits


def test_plan_without_must_fit_stops_at_fraction() -> None:
    t = Transcript()
    for _ in range(10):
        t.turn(tokens=50)
    plan = plan_eviction(t.msgs, fixed_tokens=200, window=1000, reserve=300, must_fit=False)
    assert plan.evicted_tokens == 300
    assert not plan.fits


def test_plan_zero_fraction_evicts_only_what_is_needed() -> None:
    t = Transcript()
    for _ in range(10):
        t.turn(tokens=50)
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=900, reserve=0, fraction=0.0)
    assert plan.evicted_tokens == 100 and plan.fits
    assert plan_eviction(t.msgs, fixed_tokens=0, window=5000, reserve=0, fraction=0.0).evict_count == 0


def test_plan_never_evicts_last_turn() -> None:
    t = Transcript().turn(tokens=10).turn(tokens=10).turn(tokens=500, tool_rounds=2)
    plan = plan_eviction(t.msgs, fixed_tokens=100, window=1000, reserve=200)
    assert plan.evict_count == 4  # everything before the last user message
    assert plan.remaining_tokens == 3000
    assert not plan.fits
    assert_no_orphans(t.msgs, plan.evict_count)


def test_plan_last_turn_is_kept_even_when_fixed_part_overflows() -> None:
    t = Transcript().turn().turn()
    plan = plan_eviction(t.msgs, fixed_tokens=5000, window=1000, reserve=0)
    assert plan.evict_count == 2 and not plan.fits


def test_plan_single_giant_turn_cuts_at_safe_points() -> None:
    t = Transcript().user(10)
    for _ in range(10):
        t.tool_round(calls=2, call_tokens=20, result_tokens=20)  # 60 tokens per round
    t.assistant(10)
    total = sum(x for _, _, x in t.msgs)
    assert total == 620
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=100_000, reserve=0)
    assert plan.evicted_tokens >= 0.3 * total
    assert 0 < plan.evict_count < len(t.msgs)
    assert_no_orphans(t.msgs, plan.evict_count)


def test_plan_single_giant_turn_must_fit() -> None:
    t = Transcript().user(10)
    for _ in range(10):
        t.tool_round(calls=2, call_tokens=20, result_tokens=20)
    t.assistant(10)
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=200, reserve=0)
    assert plan.fits and plan.remaining_tokens <= 200
    assert_no_orphans(t.msgs, plan.evict_count)
    # Nothing fits: evict up to the last safe point, keep the tail.
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=5, reserve=0)
    assert plan.evict_count == len(t.msgs) - 1 and not plan.fits
    assert_no_orphans(t.msgs, plan.evict_count)


def test_plan_single_turn_ending_in_tool_results_keeps_the_whole_last_round() -> None:
    t = Transcript().user(10).tool_round(calls=3, call_tokens=10, result_tokens=10)
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=1, reserve=0)
    assert plan.evict_count == 1  # only the user message can go
    assert_no_orphans(t.msgs, plan.evict_count)


def test_plan_no_user_messages_at_all() -> None:
    t = Transcript().assistant(100).assistant(100).assistant(100)
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=150, reserve=0)
    assert plan.evict_count == 2 and plan.fits


def test_plan_only_one_message() -> None:
    t = Transcript().user(5000)
    plan = plan_eviction(t.msgs, fixed_tokens=0, window=1000, reserve=100)
    assert plan == EvictionPlan(0, 0, 5000, False)


def test_plan_accepts_window_messages() -> None:
    msgs = [
        WindowMessage("m1", {"role": "user", "content": "a"}, 100),
        WindowMessage("m2", {"role": "assistant", "content": "b"}, 100),
        WindowMessage("m3", {"role": "user", "content": "c"}, 100),
        WindowMessage("m4", {"role": "assistant", "content": "d"}, 100),
    ]
    plan = plan_eviction(msgs, fixed_tokens=0, window=1000, reserve=0)
    assert plan.evict_count == 2
    assert [m.message_id for m in msgs[: plan.evict_count]] == ["m1", "m2"]


@pytest.mark.parametrize("seed", range(40))
def test_plan_random_shapes_never_orphan_tools(seed: int) -> None:
    import random

    rng = random.Random(seed)
    t = Transcript()
    if rng.random() < 0.2:
        t.assistant(rng.randint(1, 50))
    for _ in range(rng.randint(0, 12)):
        t.user(rng.randint(1, 200))
        for _ in range(rng.randint(0, 3)):
            t.tool_round(calls=rng.randint(1, 3), call_tokens=rng.randint(1, 80), result_tokens=rng.randint(1, 400))
        if rng.random() < 0.8:
            t.assistant(rng.randint(1, 200))
    total = sum(x for _, _, x in t.msgs)
    fixed = rng.randint(0, 500)
    window = rng.randint(200, 4000)
    reserve = reply_reserve(window)
    plan = plan_eviction(t.msgs, fixed_tokens=fixed, window=window, reserve=reserve, fraction=rng.choice([0.0, 0.3, 0.5]))
    assert 0 <= plan.evict_count <= len(t.msgs)
    assert plan.evicted_tokens + plan.remaining_tokens == total
    assert plan.evicted_tokens == sum(x for _, _, x in t.msgs[: plan.evict_count])
    assert plan.fits == (fixed + plan.remaining_tokens <= window - reserve)
    assert_no_orphans(t.msgs, plan.evict_count)
    if t.msgs:
        assert plan.evict_count < len(t.msgs), "the newest message always stays"
    users = turn_boundaries(t.msgs)
    if plan.evict_count and any(u > 0 for u in users):
        assert plan.evict_count in users, "with turns available, cuts fall on a turn start"
    if not plan.fits and any(u > 0 for u in users):
        assert plan.evict_count == max(users), "must_fit evicts every turn but the last before giving up"


def test_plan_rejects_bad_arguments() -> None:
    t = Transcript().turn()
    with pytest.raises(ValueError):
        plan_eviction(t.msgs, fixed_tokens=0, window=0, reserve=0)
    with pytest.raises(ValueError):
        plan_eviction(t.msgs, fixed_tokens=0, window=100, reserve=-1)
    with pytest.raises(ValueError):
        plan_eviction(t.msgs, fixed_tokens=0, window=100, reserve=0, fraction=1.5)
