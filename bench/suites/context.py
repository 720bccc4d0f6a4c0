"""Context: what compaction adds to a turn, and what counting the context's tokens costs per turn.

(a) Agents with a 24,000-token window (`context_window_limit`): the reply reserve is 4,096 tokens, so
    a request must stay under 19,904 tokens and the high-water mark (75%) is 18,000: between the two
    a turn still fits while the background summary runs. Each agent is filled close to the mark with
    long user messages, then driven, one agent at a time, with zero-delay turns (each followed by a
    paired direct request):
      normal  x2   small turns below the mark (no compaction anywhere);
      crossing     a turn whose input carries the context past the mark: memproxy starts a compaction
                   in the background after it (not a measured category);
      after_hw     a small turn sent at once: the summary is still running, the turn fits, no wait;
      wait         a turn with ~3,900 tokens of input sent at once: it would overflow, so it waits for
                   the running summary.
    The summary call is made slow, and only it: every filling user message starts with
    `[[sim:{"ttft_ms": S}]]`; the simulator reads markers from a request's last user message, which for
    a summary request is the transcript quoting the evicted messages, while the agent's own turns carry
    `X-Sim-Ttft-Ms: 0` (headers beat markers). The suite checks this on the simulator's request log.
(b) In process: `ContextBudget.measure()` (the per-turn token count) on an agent with 50 and 500
    in-context messages: cold (nothing counted yet), warm (everything cached), and per turn (warm plus
    one new message, the oldest dropped).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import seed
from bench.harness import Harness
from bench.loadgen import Conn, Result, Template, chat_body
from bench.stats import summary
from bench.suite import CpuMeter, SuiteResult, Table, bottleneck_note
from bench.suites.common import CHAT, direct_request
from bench.suites.context_tokens import token_counting
from bench.report import cdf, save_figure

WINDOW = 24_000
RESERVE = min(4_096, WINDOW // 4)
HIGH_WATER = int(WINDOW * 0.75)  # 18,000
OVERFLOW = WINDOW - RESERVE  # 19,904: a request above this must wait for (or make) a summary
FILL_TOKENS = 3_000
SMALL_TOKENS = 40
WAIT_TOKENS = OVERFLOW - HIGH_WATER + 2_000  # overflows from any context past the mark
CATEGORIES = ("normal", "after_hw", "wait")
SUMMARY_MARK = "You maintain the long-term conversation summary"
# Each " word" is one cl100k token and four characters (the simulator counts 4 characters a token), so
# our estimate and the simulator's reported usage agree and calibration stays near 1.
WORDS = ("the and for you are not but can was one all her his our out day get has him how man new now old see "
         "two way who boy did its let put say she too use").split()


def _sizes(h: Harness) -> dict[str, Any]:
    if h.scale.smoke:
        return {"agents": 2, "summary_ms": 60, "fill_workers": 2, "token_sizes": (50, 500), "cold_reps": 3,
                "warm_reps": 20}
    return {"agents": 40, "summary_ms": 300, "fill_workers": 4, "token_sizes": (50, 500), "cold_reps": 30,
            "warm_reps": 300}


def filler(tokens: int, salt: int) -> str:
    rng = random.Random(salt)
    return " ".join(rng.choice(WORDS) for _ in range(max(1, tokens)))


async def _context_tokens(client: httpx.AsyncClient, agent_id: str) -> int:
    response = await client.get(f"/v1/agents/{agent_id}/context")
    response.raise_for_status()
    return int(response.json()["context_window_size_current"])


async def _create_agents(client: httpx.AsyncClient, n: int) -> list[str]:
    body = {**seed.TEMPLATE_AGENT, "context_window_limit": WINDOW}
    ids = []
    for i in range(n):
        response = await client.post("/v1/agents/", json={**body, "name": f"context-{i}"})
        response.raise_for_status()
        ids.append(str(response.json()["id"]))
    return ids


async def _fill(h: Harness, client: httpx.AsyncClient, agent_id: str, summary_ms: int, salt: int,
                headers: dict[str, str]) -> int:
    """Long turns (each marked to slow the summary that will quote it) until the context nears the mark."""
    assert h.memproxy is not None
    conn = await Conn(h.memproxy.port).open()
    marker = '[[sim:{"ttft_ms": %d}]]' % summary_ms
    tokens = await _context_tokens(client, agent_id)
    turns = 0
    while tokens < HIGH_WATER - 2_000 and turns < 20:
        size = min(FILL_TOKENS, HIGH_WATER - 1_200 - tokens)
        request = Template(CHAT, chat_body(agent_id, f"{marker} {filler(size, salt * 100 + turns)}"), headers)
        result = await conn.send(request, "fill")
        if not result.ok:
            raise RuntimeError(f"context fill turn failed: {result.error}")
        turns += 1
        tokens = await _context_tokens(client, agent_id)
    conn.close()
    return tokens


async def _drive(h: Harness, client: httpx.AsyncClient, agent_id: str, salt: int, headers: dict[str, str],
                 summary_ms: int) -> dict[str, Any] | None:
    """normal x2, crossing, after_hw, wait on one agent; each agent turn followed by a paired direct request."""
    assert h.sim is not None and h.memproxy is not None
    mp, sim = await Conn(h.memproxy.port).open(), await Conn(h.sim.port).open()
    direct = direct_request(headers)
    await sim.send(direct, "warmup")
    out: dict[str, Any] = {"pairs": {c: [] for c in CATEGORIES}, "sequence": []}

    async def turn(kind: str, tokens: int) -> Result:
        text = f"Quick one ({salt}-{len(out['sequence'])}): {filler(tokens, salt * 1000 + len(out['sequence']))}"
        result = await mp.send(Template(CHAT, chat_body(agent_id, text), headers), kind)
        out["sequence"].append(kind)
        if kind in CATEGORIES:
            paired = await sim.send(direct, "direct")
            out["pairs"][kind].append((result, paired))
        return result

    try:
        before = await _context_tokens(client, agent_id)
        if before >= HIGH_WATER - 3 * SMALL_TOKENS:
            return None
        for _ in range(2):
            await turn("normal", SMALL_TOKENS)
        tokens = await _context_tokens(client, agent_id)
        crossing: Result | None = None
        for _ in range(3):  # calibration can leave a crossing turn a little short: cross again
            crossing = await turn("crossing", HIGH_WATER - tokens + 600)
            tokens = await _context_tokens(client, agent_id)
            if tokens > HIGH_WATER:
                break
        if tokens <= HIGH_WATER or tokens > OVERFLOW - 4 * SMALL_TOKENS or crossing is None or not crossing.ok:
            return None
        out["crossed_at_tokens"] = tokens
        await turn("after_hw", SMALL_TOKENS)
        wait = await turn("wait", WAIT_TOKENS)
        if wait.ok and wait.ttft_ms is not None:
            # From the summary's expected return (crossing turn's end + the summary delay) to the first token.
            out["wait_beyond_summary_ms"] = ((wait.started + wait.ttft_ms / 1000)
                                             - (crossing.started + crossing.e2e_ms / 1000)) * 1000 - summary_ms
        await asyncio.sleep(summary_ms / 1000 + 0.05)  # let this agent's compaction settle before the next
        return out
    finally:
        mp.close()
        sim.close()


async def _summary_check(sim_base: str, summary_ms: int) -> dict[str, int]:
    """Count summary requests in the simulator's log, and those whose last user message holds the delay marker.

    Clears the log, so each call sees only what was sent since the previous one."""
    async with httpx.AsyncClient(base_url=sim_base, timeout=60.0) as client:
        entries = orjson.loads((await client.get("/sim/requests")).content)
        await client.delete("/sim/requests")  # the log is bounded: check (and clear) it after every agent
    marker = '"ttft_ms": %d' % summary_ms
    summaries = [e for e in entries if e.get("_path") == "/v1/chat/completions" and e.get("messages")
                 and SUMMARY_MARK in str(e["messages"][0].get("content"))]
    marked = [e for e in summaries if marker in str(e["messages"][-1].get("content"))
              and "x-sim-ttft-ms" not in e.get("_headers", {})]
    return {"summary_requests": len(summaries), "summary_requests_delayed": len(marked)}


async def _compaction(h: Harness, result: SuiteResult, sz: dict[str, Any]) -> None:
    assert h.sim is not None
    data = h.new_data_dir("context")
    mp = h.start_memproxy(data)
    zero = h.profile("zero")
    summary_ms = sz["summary_ms"]
    async with httpx.AsyncClient(base_url=mp.base, timeout=60.0) as client:
        ids = await _create_agents(client, sz["agents"])
        t0 = time.monotonic()
        queue = list(enumerate(ids))

        async def filler_worker() -> None:
            while queue:
                i, agent = queue.pop()
                await _fill(h, client, agent, summary_ms, i, zero)

        await asyncio.gather(*(filler_worker() for _ in range(sz["fill_workers"])))
        h.log(f"context: {len(ids)} agents (window {WINDOW}) filled to near the mark in {time.monotonic() - t0:.1f}s")
        async with httpx.AsyncClient(base_url=h.sim.base, timeout=30.0) as sim_client:
            await sim_client.delete("/sim/requests")
        await asyncio.sleep(0.3)  # recall indexing of the fill turns
        meter = CpuMeter({"sim": h.sim.pid, "memproxy": mp.pid}).start()
        driven: list[tuple[str, dict[str, Any]]] = []
        skipped = 0
        check = {"summary_requests": 0, "summary_requests_delayed": 0}
        for i, agent in enumerate(ids):
            out = await _drive(h, client, agent, i, zero, summary_ms)
            if out is None:
                skipped += 1
            else:
                driven.append((agent, out))
            for key, value in (await _summary_check(h.sim.base, summary_ms)).items():
                check[key] += value
        cpu = meter.stop()
        # memproxy's own view: time outside upstream streams per turn, from the run records.
        overhead: dict[str, list[float]] = {c: [] for c in CATEGORIES}
        aligned = 0
        for agent, out in driven:
            response = await client.get("/v1/runs/", params={"agent_id": agent, "limit": 1000})
            runs = list(reversed(response.json()))[-len(out["sequence"]):]
            if len(runs) != len(out["sequence"]):
                continue
            aligned += 1
            for kind, run in zip(out["sequence"], runs):
                timings = run.get("timings") or {}
                if kind in overhead and "total_ms" in timings:
                    overhead[kind].append(timings["total_ms"] - timings.get("upstream_ms", 0.0))
    h.stop_memproxy()
    figures: dict[str, Any] = {"agents": len(ids), "driven": len(driven), "skipped": skipped,
                               "window": WINDOW, "high_water": HIGH_WATER, "overflow_above": OVERFLOW,
                               "summary_delay_ms": summary_ms, **check, "cpu": cpu}
    samples: dict[str, list[float]] = {}
    for kind in CATEGORIES:
        pairs = [p for _, out in driven for p in out["pairs"][kind]]
        ok = [(a, d) for a, d in pairs if a.ok and d.ok and a.ttft_ms is not None and d.ttft_ms is not None]
        added = [a.ttft_ms - d.ttft_ms for a, d in ok]  # type: ignore[operator]
        samples[kind] = added
        figures[kind] = {"turns": len(pairs), "errors": sum(not a.ok for a, _ in pairs),
                         "agent_ttft_ms": summary(a.ttft_ms for a, _ in ok),
                         "direct_ttft_ms": summary(d.ttft_ms for _, d in ok),
                         "added_ttft_ms": summary(added),
                         "run_overhead_ms": summary(overhead[kind])}
    figures["wait"]["beyond_summary_ms"] = summary(out["wait_beyond_summary_ms"] for _, out in driven
                                                   if "wait_beyond_summary_ms" in out)
    figures["crossed_at_tokens"] = summary(out["crossed_at_tokens"] for _, out in driven)
    figures["runs_aligned"] = aligned
    result.figures["compaction"] = figures
    result.samples["added_ttft_ms"] = samples
    if check["summary_requests_delayed"] < len(driven):
        result.notes.append(f"CHECK: only {check['summary_requests_delayed']} of {check['summary_requests']} summary "
                            f"requests carried the {summary_ms} ms delay marker for {len(driven)} driven agents: "
                            "the `wait` figures may not include a slow summary.")
    if skipped:
        result.notes.append(f"{skipped} of {len(ids)} agents skipped (the crossing turn did not land between the "
                            "mark and the overflow line).")
    note = bottleneck_note("context compaction", cpu)
    if note:
        result.notes.append(note)
    h.log("context: added TTFT p50 normal {:.2f} / after_hw {:.2f} / wait {:.2f} ms; {} of {} summaries delayed".format(
        figures["normal"]["added_ttft_ms"]["p50"], figures["after_hw"]["added_ttft_ms"]["p50"],
        figures["wait"]["added_ttft_ms"]["p50"], check["summary_requests_delayed"], check["summary_requests"]))


async def run(h: Harness) -> SuiteResult:
    sz = _sizes(h)
    result = SuiteResult()
    h.log(f"context: {sz['agents']} agents driven across the high-water mark, summary delayed {sz['summary_ms']} ms")
    await _compaction(h, result, sz)
    h.log(f"context: token counting at {sz['token_sizes']} in-context messages (in process)")
    result.figures["tokens"] = token_counting(sz)
    result.tables = _tables(result.figures)
    c = result.figures["compaction"]
    result.notes.append(
        f"Compaction: window {WINDOW} tokens, high-water mark {HIGH_WATER}, a request above {OVERFLOW} must wait; "
        f"summary calls delayed {c['summary_delay_ms']} ms by the simulator ({c['summary_requests_delayed']} of "
        f"{c['summary_requests']} summary requests carried the delay marker). Added TTFT = agent TTFT - the "
        "paired direct request sent right after it (zero-delay profile). `wait beyond summary` = the wait turn's "
        "first token - (end of the crossing turn + summary delay): what memproxy adds once the summary is back "
        "(the summary call's own HTTP round trip, evicting, storing the summary, the turn itself, ~3,900 input "
        "tokens counted). `run overhead` = memproxy's run timings, total_ms - upstream_ms. normal and after_hw turns carry "
        "a ~17-19k-token context (a ~75 KB upstream request), so their added TTFT includes building and relaying "
        "it: compare them with each other, not with the latency suite's 50-message agents.")
    result.notes.append("Token counting: `ContextBudget.measure()` in the bench process (system prompt, 4 blocks, "
                        "the default tool schemas, N messages of ~25 tokens). cold = fresh text cache and new "
                        "messages (every message tokenized); warm = same context again (all cached); per turn = warm "
                        "plus one new message (the oldest dropped), what a turn pays; measure() runs about twice "
                        "per turn (before the request, and after it for the high-water check).")
    return result


def _tables(figures: dict[str, Any]) -> list[Table]:
    c = figures["compaction"]
    rows = []
    for kind, label in (("normal", "normal turn (below the mark)"),
                        ("after_hw", "right after the mark (summary running, fits)"),
                        ("wait", "must wait for the summary")):
        f = c[kind]
        rows.append([label, f["turns"], f["direct_ttft_ms"]["p50"], f["agent_ttft_ms"]["p50"],
                     f["added_ttft_ms"]["p50"], f["added_ttft_ms"]["p90"], f["added_ttft_ms"]["p99"],
                     f["run_overhead_ms"]["p50"], f["run_overhead_ms"]["p99"], f["errors"]])
    b = c["wait"]["beyond_summary_ms"]
    rows.append([f"wait beyond the {c['summary_delay_ms']} ms summary", b["n"], "", "", b["p50"], b["p90"],
                 b["p99"], "", "", ""])
    trows = []
    for point in figures["tokens"].values():
        for key, label in (("cold_ms", "cold"), ("warm_ms", "warm"), ("per_turn_ms", "per turn (+1 message)")):
            s = point[key]
            trows.append([point["messages"], label, s["n"], s["p50"] * 1000, s["p99"] * 1000, s["max"] * 1000])
    return [
        Table(f"Compaction and TTFT (ms; {c['driven']} agents, window {c['window']}, summary delay "
              f"{c['summary_delay_ms']} ms)",
              ["turn", "n", "direct p50", "agent p50", "+p50", "+p90", "+p99", "run overhead p50",
               "run overhead p99", "errors"], rows),
        Table("Token counting per measure() call (us, in process)",
              ["messages", "cache", "n", "p50 us", "p99 us", "max us"], trows),
    ]


def plot(result: SuiteResult, out_dir: Path, stem: str) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np

    samples = result.samples.get("added_ttft_ms", {})
    tokens = result.figures.get("tokens", {})
    if not samples and not tokens:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for kind, values in samples.items():
        data = np.sort(np.asarray(values, dtype=float))
        cdf(left, np.maximum(data, 0.01), kind, "-o", ms=3)
    left.set_xscale("log")
    left.set_xlabel("added TTFT, agent - direct (ms, log)")
    left.set_ylabel("fraction of turns")
    left.set_title("turns around compaction")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    labels = list(tokens)
    x = np.arange(len(labels))
    for i, (key, name) in enumerate((("cold_ms", "cold"), ("warm_ms", "warm"), ("per_turn_ms", "per turn"))):
        right.bar(x + (i - 1) * 0.27, [tokens[k][key]["p50"] * 1000 for k in labels], 0.27, label=name)
    right.set_xticks(x, [f"{tokens[k]['messages']} msgs" for k in labels])
    right.set_yscale("log")
    right.set_ylabel("measure() p50 (us, log)")
    right.set_title("token counting")
    right.grid(alpha=0.3, axis="y")
    right.legend(fontsize=8)
    return save_figure(fig, out_dir, f"{stem}-context.png")
