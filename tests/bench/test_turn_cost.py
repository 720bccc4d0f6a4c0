"""`python -m bench.turn_cost` runs real agent turns through the app: each reaches the upstream and is kept."""

from __future__ import annotations

import uvloop

from bench import turn_cost


def test_turn_cost_measures_whole_agent_turns_that_grow_the_history() -> None:
    figures = uvloop.run(turn_cost.measure(agents=4, history=3, turns=8, rounds=2, concurrency=2))
    assert figures["turns"] == 4 * 3 + 2 * 8
    assert figures["upstream_requests"] == figures["turns"]  # one upstream call per turn, none replayed
    # Every turn streamed its answer; all answers have the same shape, so nearly the same size (ids differ).
    sizes = figures["answer_bytes"]
    assert sizes and min(sizes) > 1000 and max(sizes) - min(sizes) < 100
    (fewest_before, _), (_, most_after) = figures["in_context"]
    assert most_after == fewest_before + 2 * (2 * 8 // 4)  # each measured turn kept its user and assistant message
    assert len(figures["rounds_us"]) == 2 and figures["cpu_us_per_turn"] == min(figures["rounds_us"]) > 0
    assert 0 < figures["loop_us_per_turn"] == min(figures["loop_rounds_us"])
