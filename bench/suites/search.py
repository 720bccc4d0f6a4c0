"""Search: archival search latency vs store size, and what a busy background indexer adds to a turn's TTFT.

(a) `GET /v1/agents/{id}/archival-memory/search` at 1k, 10k and 100k passages of one agent, sequential
    (c=1), each request a different query. Passages are written straight into LanceDB (memproxy
    stopped) in 5,000-row batches, then optimized; memproxy starts on the store and the figures are
    taken once its start-up index repair reports `done`. Two modes: `fts` (no embedding model, the
    default: LanceDB BM25 only) and `hybrid` (`--embedding-model sim-embedding`: every query is also
    embedded by the simulator, vector + BM25 fused), the latter at 1k and 10k.
(b) Paired TTFT (agent turn minus direct simulator request, zero-delay profile, c=1) while the
    background indexer is idle, while a steady stream of agent turns on other agents feeds the recall
    indexer, and while a steady stream of archival passages is written.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import urllib.parse
from pathlib import Path
from typing import Any


from bench import seed
from bench.harness import Harness
from bench.loadgen import Conn, build_request
from bench.procs import Proc, start_memproxy
from bench.stats import summary
from bench.suite import CpuMeter, SuiteResult, Table, bottleneck_note
from bench.suites.common import added_figures, agent_request, paired_rounds, path_figures, split_agents, warm_agents
from bench.report import cdf, save_figure

EMBEDDING_MODEL = "sim-embedding"
CONDITIONS = ("idle", "recall", "archival")


def _sizes(h: Harness) -> dict[str, Any]:
    if h.scale.smoke:
        return {"fts": (200,), "hybrid": (100,), "queries": 10, "rounds": 8, "turns_per_agent": 4,
                "bg_turn_workers": 2, "bg_archival_workers": 1, "pace_s": 0.05}
    return {"fts": (1_000, 10_000, 100_000), "hybrid": (1_000, 10_000), "queries": 300, "rounds": 150,
            "turns_per_agent": 10, "bg_turn_workers": 4, "bg_archival_workers": 2, "pace_s": 0.1}


def _start(h: Harness, data: Path, mode: str) -> Proc:
    """memproxy on `data`, with the simulator's embedding model in hybrid mode."""
    if mode == "fts":
        return h.start_memproxy(data)
    h.stop_memproxy()
    t0 = time.monotonic()
    h.memproxy = start_memproxy(h.log_dir, data, h.upstream, ["--embedding-model", EMBEDDING_MODEL])
    h.log(f"memproxy pid {h.memproxy.pid} (embeddings: {EMBEDDING_MODEL}) ready in {time.monotonic() - t0:.1f}s")
    return h.memproxy


def _search_requests(agent_id: str, n: int, vocabulary: list[str]) -> list[bytes]:
    """`n` raw GETs, each a different 1-3 word query (one topical word + pseudo-words from the passages)."""
    rng = random.Random(11)
    out = []
    for _ in range(n):
        words = [rng.choice(seed.PASSAGE_TOPICS)] + [rng.choice(vocabulary) for _ in range(rng.randint(0, 2))]
        query = urllib.parse.urlencode({"query": " ".join(words), "top_k": 10})
        out.append(f"GET /v1/agents/{agent_id}/archival-memory/search?{query} HTTP/1.1\r\n"
                   f"Host: 127.0.0.1\r\n\r\n".encode())
    return out


async def _measure_search(h: Harness, mp: Proc, agent_id: str, n: int, vocabulary: list[str]) -> dict[str, Any]:
    assert h.sim is not None
    conn = await Conn(mp.port).open()
    warm = _search_requests(agent_id, 10, vocabulary[::-1])
    for request in warm:
        await conn.send(request, "warmup")
    meter = CpuMeter({"sim": h.sim.pid, "memproxy": mp.pid}).start()
    results = [await conn.send(request, "search") for request in _search_requests(agent_id, n, vocabulary)]
    cpu = meter.stop()
    conn.close()
    ok = [r for r in results if r.ok]
    return {"requests": len(results), "errors": len(results) - len(ok), "latency_ms": summary(r.e2e_ms for r in ok),
            "cpu": cpu}


async def _search_points(h: Harness, result: SuiteResult, mode: str, points: tuple[int, ...], queries: int) -> None:
    """Grow one agent's archival store point by point; measure search at each size."""
    data = h.new_data_dir(f"search-{mode}")
    embedder = None
    if mode == "hybrid":
        from memory.longterm import HttpEmbedder

        embedder = HttpEmbedder(h.upstream, None, EMBEDDING_MODEL)
    vocabulary = seed.passage_vocabulary()
    stored = 0
    out = result.figures.setdefault("archival", {}).setdefault(mode, {})
    for target in points:
        t0 = time.monotonic()
        await seed.add_passages(data, h.template_id, stored, target - stored, embedder=embedder)
        seed_s = time.monotonic() - t0
        stored = target
        t0 = time.monotonic()
        mp = _start(h, data, mode)
        ready_s = time.monotonic() - t0  # start-up includes the index repair (bench.procs waits for it)
        point = await _measure_search(h, mp, h.template_id, queries, vocabulary)
        point.update({"passages": target, "seed_s": seed_s, "index_ready_s": ready_s, "rss_mb": mp.rss_kb() / 1024})
        out[f"n{target}"] = point
        h.stop_memproxy()
        lat = point["latency_ms"]
        h.log(f"search {mode} n={target}: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, errors "
              f"{point['errors']} (seeded in {seed_s:.1f}s)")
    if embedder is not None:
        await embedder.close()


async def _background_turns(port: int, agents: list[str], pace: float, stop: asyncio.Event,
                            counts: dict[str, int], headers: dict[str, str]) -> None:
    """One worker per agent: a zero-delay turn, then `pace` seconds of quiet, until stopped."""
    async def worker(agent: str) -> None:
        conn = await Conn(port).open()
        request = agent_request(agent, headers)
        while not stop.is_set():
            r = await conn.send(request, "background")
            counts["turns"] += 1
            counts["errors"] += not r.ok
            await asyncio.sleep(pace)
        conn.close()

    await asyncio.gather(*(worker(a) for a in agents))


async def _background_archival(port: int, agent: str, workers: int, pace: float, stop: asyncio.Event,
                               counts: dict[str, int]) -> None:
    """`workers` loops POSTing one archival passage each, then `pace` seconds of quiet, until stopped."""
    vocabulary = seed.passage_vocabulary()

    async def worker(w: int) -> None:
        conn = await Conn(port).open()
        i = 0
        while not stop.is_set():
            [(text, tags)] = seed.passage_items(1_000_000 * (w + 1) + i, 1, vocabulary)
            r = await conn.send(build_request(f"/v1/agents/{agent}/archival-memory", {"text": text, "tags": tags}),
                                "archival")
            i += 1
            counts["passages"] += 1
            counts["errors"] += not r.ok
            await asyncio.sleep(pace)
        conn.close()

    await asyncio.gather(*(worker(w) for w in range(workers)))


async def _indexer(h: Harness, result: SuiteResult, sz: dict[str, Any]) -> None:
    rounds, per_agent = sz["rounds"], sz["turns_per_agent"]
    measured_per_condition = math.ceil(rounds / per_agent)
    bg = sz["bg_turn_workers"]
    data = h.new_data_dir("search-indexer")
    ids = seed.clone_agents(data, h.template_id, measured_per_condition * len(CONDITIONS) + bg + 1,
                            seed.IN_CONTEXT - 2, tag="indexer")
    mp = h.start_memproxy(data)
    errors = await warm_agents(h, ids)
    assert h.sim is not None
    zero = h.profile("zero")
    bg_agents, archival_agent, measured = ids[:bg], ids[bg], ids[bg + 1:]
    out = result.figures.setdefault("indexer", {})
    out["warmup_errors"] = errors
    samples: dict[str, list[float]] = {}
    for c, condition in enumerate(CONDITIONS):
        stop = asyncio.Event()
        counts = {"turns": 0, "passages": 0, "errors": 0}
        task = None
        if condition == "recall":
            task = asyncio.create_task(_background_turns(mp.port, bg_agents, sz["pace_s"], stop, counts, zero))
        elif condition == "archival":
            task = asyncio.create_task(_background_archival(mp.port, archival_agent, sz["bg_archival_workers"],
                                                            sz["pace_s"] / 2, stop, counts))
        if task is not None:
            await asyncio.sleep(1.0 if not h.scale.smoke else 0.2)  # reach a steady state first
        agents = split_agents(measured[c * measured_per_condition:(c + 1) * measured_per_condition], 1,
                              measured_per_condition)
        before = dict(counts)
        meter = CpuMeter({"sim": h.sim.pid, "memproxy": mp.pid}).start()
        t0 = time.monotonic()
        results = await paired_rounds(h, ("direct", "agent"), agents, rounds, per_agent, zero)
        wall = time.monotonic() - t0
        cpu = meter.stop()
        stop.set()
        if task is not None:
            await task
        phase: dict[str, Any] = {p: path_figures(results[p]) for p in ("direct", "agent")}
        phase["added_ttft_ms"] = added_figures(results, "agent")["ttft_ms"]
        phase["background_turns_per_s"] = (counts["turns"] - before["turns"]) / wall
        phase["background_passages_per_s"] = (counts["passages"] - before["passages"]) / wall
        phase["background_errors"] = counts["errors"]
        phase["cpu"] = cpu
        out[condition] = phase
        by_tag = {name: {r.tag: r.ttft_ms for r in results[name] if r.ok and r.ttft_ms is not None}
                  for name in ("direct", "agent")}
        samples[condition] = [by_tag["agent"][k] - by_tag["direct"][k] for k in by_tag["agent"].keys() & by_tag["direct"]]
        note = bottleneck_note(f"search indexer {condition}", cpu)
        if note:
            result.notes.append(note)
        h.log(f"search indexer {condition}: added TTFT p50 {phase['added_ttft_ms']['p50']:.2f} ms, p99 "
              f"{phase['added_ttft_ms']['p99']:.2f} ms; background {phase['background_turns_per_s']:.1f} turns/s, "
              f"{phase['background_passages_per_s']:.1f} passages/s")
    idle = out["idle"]["added_ttft_ms"]
    for condition in CONDITIONS[1:]:
        busy = out[condition]["added_ttft_ms"]
        out[condition]["extra_vs_idle_ms"] = {"p50": busy["p50"] - idle["p50"], "p99": busy["p99"] - idle["p99"]}
    result.samples["added_ttft_ms"] = samples
    h.stop_memproxy()


async def run(h: Harness) -> SuiteResult:
    sz = _sizes(h)
    result = SuiteResult()
    h.log(f"search: archival search at {sz['fts']} passages (fts) and {sz['hybrid']} (hybrid), "
          f"{sz['queries']} queries each")
    await _search_points(h, result, "fts", sz["fts"], sz["queries"])
    await _search_points(h, result, "hybrid", sz["hybrid"], sz["queries"])
    h.log(f"search indexer: {sz['rounds']} paired rounds per condition ({', '.join(CONDITIONS)})")
    await _indexer(h, result, sz)
    result.tables = _tables(result.figures)
    result.notes.append("Archival search: client-side time of one `GET .../archival-memory/search?query=..&top_k=10` "
                        "(c=1, a different 1-3 word query each time, ~30-word passages of one agent). `fts` = no "
                        "embedding model (BM25 only, memproxy's default); `hybrid` = `--embedding-model "
                        "sim-embedding`: the query is embedded by the simulator (an HTTP round trip) and vector and "
                        "BM25 results are fused. memproxy CPU near or above 100% there is LanceDB searching on its own threads, not queueing: "
                        "requests are sequential.")
    result.notes.append("Indexer: added TTFT = agent turn TTFT - paired direct TTFT (zero-delay simulator, c=1, 50 "
                        "in-context messages). `recall` = other agents take a zero-delay turn every "
                        f"{sz['pace_s'] * 1000:.0f} ms each ({sz['bg_turn_workers']} agents; every turn queues its "
                        "messages for the recall index); `archival` = passages POSTed every "
                        f"{sz['pace_s'] * 500:.0f} ms by {sz['bg_archival_workers']} workers (one LanceDB write "
                        "each). The busy figures include sharing two cores with that background traffic.")
    return result


def _tables(figures: dict[str, Any]) -> list[Table]:
    rows = []
    for mode, points in figures.get("archival", {}).items():
        for point in points.values():
            lat = point["latency_ms"]
            rows.append([mode, point["passages"], lat["n"], lat["p50"], lat["p90"], lat["p99"], lat["max"],
                         point["errors"], point["cpu"]["memproxy_pct"], point["seed_s"]])
    idx = figures.get("indexer", {})
    irows = []
    for condition in CONDITIONS:
        if condition not in idx:
            continue
        phase = idx[condition]
        added = phase["added_ttft_ms"]
        extra = phase.get("extra_vs_idle_ms", {"p50": 0.0, "p99": 0.0})
        irows.append([condition, added["n"], phase["direct"]["ttft_ms"]["p50"], phase["agent"]["ttft_ms"]["p50"],
                      added["p50"], added["p90"], added["p99"], extra["p50"], extra["p99"],
                      phase["background_turns_per_s"], phase["background_passages_per_s"],
                      phase["direct"]["errors"] + phase["agent"]["errors"], phase["cpu"]["memproxy_pct"],
                      phase["cpu"]["total_pct"]])
    return [
        Table("Archival search latency (ms, client-side, c=1, top_k=10)",
              ["mode", "passages", "n", "p50", "p90", "p99", "max", "errors", "memproxy CPU %", "seed s"], rows),
        Table("Added TTFT while the background indexer is busy (ms; agent - paired direct, zero profile, c=1)",
              ["condition", "pairs", "direct p50", "agent p50", "+p50", "+p90", "+p99", "vs idle p50",
               "vs idle p99", "bg turns/s", "bg passages/s", "errors", "memproxy CPU %", "total CPU %"], irows),
    ]


def plot(result: SuiteResult, out_dir: Path, stem: str) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np

    archival = result.figures.get("archival", {})
    samples = result.samples.get("added_ttft_ms", {})
    if not archival and not samples:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for mode, points in archival.items():
        xs = [p["passages"] for p in points.values()]
        for q, style in (("p50", "-o"), ("p99", "--x")):
            left.plot(xs, [p["latency_ms"][q] for p in points.values()], style, label=f"{mode} {q}")
    left.set_xscale("log")
    left.set_xlabel("passages (one agent)")
    left.set_ylabel("search latency (ms)")
    left.set_title("archival search")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    for condition, values in samples.items():
        data = np.sort(np.asarray(values, dtype=float))
        cdf(right, data, condition)
    right.set_xlabel("added TTFT, agent - direct (ms)")
    right.set_ylabel("fraction of turns")
    right.set_title("added TTFT vs background indexing")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    return save_figure(fig, out_dir, f"{stem}-search.png")

