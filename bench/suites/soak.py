"""Soak: many turns over many agents against one memproxy process; its RSS must level off after warm-up.

Agents are clones of the template with `message_buffer_autoclear` on, so each keeps a constant amount of
in-context state: whatever RSS still grows with the turn count is memory memproxy fails to give back
(caches, the database's buffers, the search index's fragments, allocator arenas), not conversation data.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench import seed
from bench.harness import Harness
from bench.loadgen import close_all, open_conns
from bench.stats import summary
from bench.suite import CpuMeter, SuiteResult, Table, bottleneck_note
from bench.suites.common import agent_request
from bench.report import save_figure

FLAT_LIMIT_PCT = 10.0
CONCURRENCY = 8
# Warm-up lasts at least this long, whatever the turn count: the first search compaction (10 s after the first
# write) must have run, since its first run pages in LanceDB's compaction code and starts its threads (~20 MB, once).
# At the zero-delay simulator's pace on an idle machine 10% of the turns (2,000) take about 7 s, before it; under
# load they take 25 s or more. Only this one-off growth is waited for: the jobs that give memory back (malloc_trim,
# version cleanup, reopening the search tables) may come after the warm-up sample, which only makes it stricter.
WARMUP_SECONDS = 15.0


async def _drive(h: Harness, agent_ids: list[str], turns: int, sample_every: int,
                 on_sample: Any) -> tuple[int, list[float]]:
    """`turns` zero-delay turns, agent k going to worker k mod CONCURRENCY; returns errors and e2e times."""
    assert h.memproxy is not None
    headers = h.profile("zero")
    workers = min(CONCURRENCY, len(agent_ids))
    conns = await open_conns(h.memproxy.port, workers)
    requests = [agent_request(a, headers) for a in agent_ids]
    usable = len(requests) - len(requests) % workers  # no two workers ever share an agent
    sent = 0
    done = 0
    errors = 0
    e2e: list[float] = []

    async def worker(w: int) -> None:
        nonlocal sent, done, errors
        k = 0
        while sent < turns:
            sent += 1
            result = await conns[w].send(requests[(w + k * workers) % usable], "agent")
            k += 1
            done += 1
            errors += not result.ok
            e2e.append(result.e2e_ms)
            if done % sample_every == 0:
                on_sample(done)

    await asyncio.gather(*(worker(w) for w in range(workers)))
    close_all(conns)
    return errors, e2e


async def run(h: Harness) -> SuiteResult:
    scale = h.scale
    turns, agents, warmup = scale.soak_turns, scale.soak_agents, scale.soak_warmup
    data = h.new_data_dir("soak")
    agent_ids = seed.clone_agents(data, h.template_id, agents, 0, tag="soak", autoclear=True)
    mp = h.start_memproxy(data)
    samples: list[tuple[int, float]] = [(0, mp.rss_kb() / 1024)]
    t0 = time.monotonic()
    times: list[float] = [0.0]  # seconds since the first turn, per sample

    def on_sample(done: int) -> None:
        samples.append((done, mp.rss_kb() / 1024))
        times.append(time.monotonic() - t0)
        if done % max(scale.soak_sample_every, turns // 10) == 0:
            h.log(f"soak: {done} turns, RSS {samples[-1][1]:.0f} MB, {done / (time.monotonic() - t0):.0f} turns/s")

    assert h.sim is not None
    meter = CpuMeter({"sim": h.sim.pid, "memproxy": mp.pid}).start()
    errors, e2e = await _drive(h, agent_ids, turns, scale.soak_sample_every, on_sample)
    elapsed = time.monotonic() - t0
    cpu = meter.stop()
    h.stop_memproxy()

    result = SuiteResult()
    warm_at = _warmup_end(samples, times, warmup, 0.0 if scale.smoke else WARMUP_SECONDS)
    result.figures = _figures(samples, warmup, warm_at, turns, agents, errors, elapsed)
    result.figures["e2e_ms"] = summary(e2e)
    result.figures["cpu"] = cpu
    result.samples = {"rss_mb": [[n, mb] for n, mb in samples]}
    f = result.figures
    result.tables = [Table(
        f"Soak: {turns} turns over {agents} agents (message_buffer_autoclear), zero-delay simulator, "
        f"concurrency {min(CONCURRENCY, agents)}",
        ["point", "turns", "RSS MB"],
        [["start", 0, f["rss_mb"]["start"]], *[[k, n, f["rss_mb"][k]] for k, n in _checkpoints(warmup, turns)],
         ["end of warm-up", f["warmup_end_turns"], f["rss_mb"]["warmup_end"]],
         ["max after warm-up", "", f["rss_mb"]["max_after_warmup"]]])]
    # A fast server can be done before the warm-up's seconds are: then nothing after it was measured.
    verdict = "PASS" if f["flat"] else "FAIL" if f["measured"] else "NOT MEASURED (warm-up took over half the turns)"
    line = (f"{verdict}: RSS grew {f['growth_after_warmup_pct']:.1f}% after warm-up (limit {FLAT_LIMIT_PCT:.0f}%): "
            f"{f['rss_mb']['warmup_end']:.0f} MB at {f['warmup_end_turns']} turns, at most "
            f"{f['rss_mb']['max_after_warmup']:.0f} MB after; {f['rss_mb']['end']:.0f} MB at the end.")
    h.log(f"soak: {line}")
    result.notes.append(line)
    result.notes.append(
        f"Warm-up ends at the later of {warmup} turns and {WARMUP_SECONDS:.0f} s after the first turn (the first "
        f"search compaction has then run); here at {f['warmup_end_turns']} turns. growth_after_warmup_pct = (largest RSS sample "
        f"after it) / (RSS at it) - 1. From {warmup} turns exactly: {f['growth_from_warmup_turns_pct']:.1f}%. "
        f"{errors} errors, {f['turns_per_s']:.0f} turns/s. RSS is VmRSS of the memproxy process, sampled every "
        f"{scale.soak_sample_every} turns.")
    note = bottleneck_note("soak", cpu)
    if note:
        result.notes.append(note)
    return result


def _checkpoints(warmup: int, turns: int) -> list[tuple[str, int]]:
    """The turn counts reported by name: warm-up, the middle and the end (2k, 10k, 20k at full scale)."""
    points = [("warmup", warmup), ("middle", turns // 2), ("end", turns)]
    return [(name, n) for name, n in points if 0 < n <= turns]


def _warmup_end(samples: list[tuple[int, float]], times: list[float], warmup: int, min_seconds: float) -> int:
    """Turns done at the first sample taken at or after `warmup` turns and `min_seconds` (the last sample if none)."""
    for (done, _), seconds in zip(samples, times):
        if done >= warmup and seconds >= min_seconds:
            return done
    return samples[-1][0]


def _figures(samples: list[tuple[int, float]], warmup: int, warm_at: int, turns: int, agents: int, errors: int,
             elapsed: float) -> dict[str, Any]:
    def at(n: int) -> float:
        """RSS at the first sample taken at or after `n` turns (the last sample if none)."""
        return next((mb for done, mb in samples if done >= n), samples[-1][1])

    def growth(base_turns: int) -> tuple[float, float, float]:
        base = at(base_turns)
        peak = max((mb for done, mb in samples if done >= base_turns), default=samples[-1][1])
        return base, peak, (100.0 * (peak / base - 1.0) if base else 0.0)

    rss = {"start": samples[0][1], **{name: at(n) for name, n in _checkpoints(warmup, turns)}}
    rss["warmup_end"], rss["max_after_warmup"], pct = growth(warm_at)
    measured = turns - warm_at >= turns // 2  # else the warm-up took most of the run and little was measured
    return {"turns": turns, "agents": agents, "warmup": warmup, "warmup_end_turns": warm_at,
            "warmup_seconds": WARMUP_SECONDS, "errors": errors,
            "turns_per_s": turns / elapsed if elapsed else 0.0, "rss_mb": rss, "growth_after_warmup_pct": pct,
            "growth_from_warmup_turns_pct": growth(warmup)[2], "measured": measured,
            "flat": measured and pct <= FLAT_LIMIT_PCT}


def plot(result: SuiteResult, out_dir: Path, stem: str) -> list[str]:
    import matplotlib.pyplot as plt

    points = result.samples.get("rss_mb") or []
    if not points:
        return []
    f = result.figures
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label="memproxy RSS")
    base = f["rss_mb"].get("warmup_end")
    if base:
        ax.axhline(base * (1 + FLAT_LIMIT_PCT / 100), color="grey", linestyle=":",
                   label=f"warm-up RSS + {FLAT_LIMIT_PCT:.0f}%")
    ax.axvline(f.get("warmup_end_turns", f["warmup"]), color="grey", linestyle="--", linewidth=0.8,
               label="end of warm-up")
    ax.set_xlabel("turns")
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"memproxy RSS over {f['turns']} turns, {f['agents']} agents")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out_dir, f"{stem}-soak.png")
