"""`python -m bench.relay_cost` relays through the real app: every request reaches its upstream and comes back whole."""

from __future__ import annotations

import uvloop

from bench import relay_cost


def test_relay_cost_measures_whole_relayed_answers() -> None:
    figures = uvloop.run(relay_cost.measure(requests=20, rounds=2))
    assert figures["upstream_requests"] == 20 + 2 * 20  # the warm-up, then each round
    answer = 12 * len(relay_cost.EVENT) + len(b"data: [DONE]\n\n")
    assert figures["relayed_bytes"] == [answer]  # every answer de-chunked and relayed in full
    assert len(figures["rounds_us"]) == 2 and figures["cpu_us_per_request"] == min(figures["rounds_us"]) > 0
