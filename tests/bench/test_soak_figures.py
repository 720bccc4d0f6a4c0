"""The soak's verdict: warm-up ends at the later of its turn count and its time; growth is measured from there."""

from __future__ import annotations

from bench.suites.soak import FLAT_LIMIT_PCT, _figures, _warmup_end

# (turns, RSS MB) every 250 turns; the first compaction at ~2,750 turns adds 20 MB once.
SAMPLES = [(n, 300.0 + (20.0 if n >= 2750 else 0.0) + n / 1000) for n in range(0, 20001, 250)]


def test_warm_up_waits_for_the_periodic_jobs_when_turns_come_fast() -> None:
    fast = [n / 270 for n, _ in SAMPLES]  # 270 turns/s: 2,000 turns in 7 s
    slow = [n / 50 for n, _ in SAMPLES]  # 50 turns/s: 2,000 turns in 40 s
    assert _warmup_end(SAMPLES, fast, 2000, 15.0) == 4250  # the first sample past 15 s
    assert _warmup_end(SAMPLES, slow, 2000, 15.0) == 2000
    assert _warmup_end(SAMPLES, fast, 2000, 10_000.0) == 20000  # never warm: the last sample


def test_growth_from_the_end_of_warm_up_and_from_the_nominal_point() -> None:
    figures = _figures(SAMPLES, 2000, 8250, 20000, 200, 0, 80.0)
    assert figures["rss_mb"]["warmup"] == 302.0 and figures["rss_mb"]["warmup_end"] == 328.25
    assert round(figures["growth_after_warmup_pct"], 2) == round(100 * (340.0 / 328.25 - 1), 2)
    assert round(figures["growth_from_warmup_turns_pct"], 2) == round(100 * (340.0 / 302.0 - 1), 2)
    assert figures["flat"] is (figures["growth_after_warmup_pct"] <= FLAT_LIMIT_PCT)
    spiky = SAMPLES[:-1] + [(20000, 400.0)]  # one sample over the limit fails the run
    assert _figures(spiky, 2000, 8250, 20000, 200, 0, 80.0)["flat"] is False


def test_a_run_over_before_its_warm_up_is_not_measured_so_not_flat() -> None:
    # 1,700 turns/s: the 15 s warm-up takes the whole 20,000 turns and leaves no sample after it.
    figures = _figures(SAMPLES, 2000, 20000, 20000, 200, 0, 12.0)
    assert figures["growth_after_warmup_pct"] == 0.0
    assert figures["measured"] is False and figures["flat"] is False
    assert _figures(SAMPLES, 2000, 10000, 20000, 200, 0, 12.0)["measured"] is True
