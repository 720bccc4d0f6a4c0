"""Index cost: the recall indexer's CPU per agent turn, and recall search latency, at 1k, 100k and 1M indexed messages.

Per size, `AGENTS` agents are cloned with `size / AGENTS` stored messages each (bulk SQL), and every message
is indexed into the recall table before memproxy starts (`seed.index_recall`: the server's own writer,
`enqueue_messages(new=True)`, in 20,000-row writes, then one optimize): driving a million messages through
the HTTP API would take hours. No embedding model (the default): full-text search only.

memproxy then starts on that data dir (its start-up repair must find nothing to fix), `DRIVEN` agents take
one warm-up turn each, and once memproxy is idle `CONCURRENCY` connections send `TURNS` zero-delay turns
(two new recall rows each). The window closes `TAIL_S` seconds after the last turn, so the recall writes of
the last turns fall inside it. The window holds about four maintenance passes (compaction, index update,
version cleanup) at every size under the default schedule (a pass per 10,000 new rows, or per 64 writes,
see memory/longterm/maintenance.py), so their cost is in the figure, amortized as the server amortizes it.

Indexer CPU is the CPU of the Lance threads (`/proc/<pid>/task/*/schedstat`, every thread whose name starts with
`lance`: LanceDB's `lancedb-tokio-w` and `lance-cpu`, the maintenance pass's `lance-maintenance` and the
`lance_background` threads of the Lance runtime it calls): every append, compaction, index update, version
cleanup and search-table reopen runs there. The event
loop's share of indexing (turning a batch of rows into one Arrow table) is proportional to the new rows
by construction, so it cannot grow with the table; it is in `event_loop_ms_per_turn` with the rest of the
turn. memproxy's whole-process CPU per turn is reported beside it.

Search: `POST /v1/agents/messages/search` (full text, limit 10), c=1, a different 1-3 word query each
time, on agents of the seeded table, right after the turns (so unindexed rows are whatever the
maintenance schedule left). Freshness: one more turn carrying a unique word, then the time until a
search finds it (README promises about a second).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
import uuid
from typing import Any

import httpx

from bench import seed
from bench.harness import Harness
from bench.loadgen import Conn, Template, chat_body, close_all, open_conns
from bench.procs import cpu_ns_since, cpu_seconds, thread_cpu_ns
from bench.stats import summary
from bench.suite import SuiteResult, Table
from bench.suites.common import CHAT, agent_request, wait_quiet, warm_agents

# Seeding a million messages takes minutes: with this set, each size's seeded data dir (before memproxy first ran on
# it) is kept there and copied for later runs.
CACHE_ENV = "MEMPROXY_BENCH_INDEXCOST_CACHE"
SIZES_ENV = "MEMPROXY_BENCH_INDEXCOST_SIZES"  # e.g. "100000": measure only these sizes
TURNS_ENV = "MEMPROXY_BENCH_INDEXCOST_TURNS"  # a longer window (more maintenance passes in it)
SIZES = (1_000, 100_000, 1_000_000)
SMOKE_SIZES = (200, 2_000)
AGENTS = 200
DRIVEN = 16
CONCURRENCY = 8
TURNS = 20_000
SEARCHES = 100
TAIL_S = 1.5
INDEXER_THREADS = ("lance",)  # LanceDB's and Lance's threads (see the module docstring)


def _by_class(used: dict[str, int]) -> dict[str, float]:
    """CPU seconds per class of thread, from `procs.cpu_ns_since` over the window (per thread name, the main
    thread as "event_loop"; a thread that exits in it, as LanceDB's workers do after idling, counts nothing
    after)."""
    out: dict[str, float] = {"event_loop": 0.0, "indexer": 0.0, "other": 0.0}
    for name, ns in used.items():
        key = name if name == "event_loop" else "indexer" if name.lower().startswith(INDEXER_THREADS) else "other"
        out[key] += ns / 1e9
    return out


async def _window(h: Harness, agent_ids: list[str], turns: int, concurrency: int) -> dict[str, Any]:
    assert h.memproxy is not None
    pid = h.memproxy.pid
    headers = h.profile("zero")
    conns = await open_conns(h.memproxy.port, concurrency)
    queues = [agent_ids[w::concurrency] for w in range(concurrency)]
    per_worker = turns // concurrency
    errors = 0

    async def worker(w: int) -> None:
        nonlocal errors
        for k in range(per_worker):
            errors += not (await conns[w].send(agent_request(queues[w][k % len(queues[w])], headers), "agent")).ok

    threads0 = thread_cpu_ns(pid)
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    turns_wall = time.perf_counter() - t0
    await asyncio.sleep(TAIL_S)
    cpu = cpu_seconds(pid) - cpu0
    used = cpu_ns_since(pid, threads0)
    close_all(conns)
    sent = per_worker * concurrency
    per_turn = {f"{k}_ms_per_turn": 1000 * cpu / sent for k, cpu in _by_class(used).items()}
    threads_cpu_s = {name: round(ns / 1e9, 3) for name, ns in sorted(used.items(), key=lambda kv: -kv[1]) if ns > 0}
    return {"turns": sent, "errors": errors, "turns_per_s": sent / turns_wall, "window_s": turns_wall + TAIL_S,
            "process_ms_per_turn": 1000 * cpu / sent, **per_turn, "threads_cpu_s": threads_cpu_s}


async def _search(h: Harness, agent_ids: list[str], count: int) -> dict[str, Any]:
    assert h.memproxy is not None
    vocabulary = seed.passage_vocabulary()
    rng = random.Random(11)
    latencies: list[float] = []
    hits = 0
    async with httpx.AsyncClient(base_url=h.memproxy.base, timeout=30.0) as client:
        for i in range(count + 5):
            body = {"agent_id": agent_ids[i % len(agent_ids)], "search_mode": "fts", "limit": 10,
                    "query": " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 3)))}
            t0 = time.perf_counter()
            response = await client.post("/v1/agents/messages/search", json=body)
            elapsed = 1000 * (time.perf_counter() - t0)
            response.raise_for_status()
            if i >= 5:  # the first few load the index
                latencies.append(elapsed)
                hits += bool(response.json())
    return {"latency_ms": summary(latencies), "queries_with_hits": hits, "queries": count}


async def _freshness(h: Harness, agent_id: str, limit_s: float = 10.0) -> dict[str, Any]:
    """Send a turn with a unique word; seconds until recall search finds it (None if not within `limit_s`)."""
    assert h.memproxy is not None
    word = "fresh" + uuid.uuid4().hex[:12]
    conn = Conn(h.memproxy.port)
    await conn.open()
    ok = (await conn.send(Template(CHAT, chat_body(agent_id, f"remember {word}"), h.profile("zero")),
                          "fresh")).ok
    close_all([conn])
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=h.memproxy.base, timeout=30.0) as client:
        while time.perf_counter() - t0 < limit_s:
            response = await client.post("/v1/agents/messages/search",
                                         json={"agent_id": agent_id, "query": word, "search_mode": "fts"})
            if response.status_code == 200 and response.json():
                return {"turn_ok": ok, "found_after_s": round(time.perf_counter() - t0, 3)}
            await asyncio.sleep(0.05)
    return {"turn_ok": ok, "found_after_s": None}


async def _seeded(h: Harness, size: int, agents: int) -> tuple[Any, int]:
    """A data dir with `agents` agents holding `size` messages in all, every one indexed; and how many were."""
    cache = os.environ.get(CACHE_ENV)
    kept = None if cache is None else os.path.join(cache, f"n{size}-a{agents}")
    if kept is not None and os.path.isdir(kept):
        data = h.work_dir / f"indexcost{size}"
        shutil.copytree(kept, data)
        h.log(f"indexcost {size}: seeded data copied from {kept}")
        return data, seed.count_rows(data)["messages"]
    data = h.new_data_dir(f"indexcost{size}")
    seed.clone_agents(data, h.template_id, agents, max(2, size // agents), tag=f"idx{size}")
    t0 = time.monotonic()
    indexed = await seed.index_recall(data)
    h.log(f"indexcost {size}: {indexed} messages indexed in {time.monotonic() - t0:.0f}s")
    if kept is not None:
        shutil.copytree(data, kept)
    return data, indexed


async def run(h: Harness) -> SuiteResult:
    smoke = h.scale.smoke
    sizes = SMOKE_SIZES if smoke else SIZES
    if os.environ.get(SIZES_ENV):
        sizes = tuple(int(n) for n in os.environ[SIZES_ENV].split(","))
    agents, driven = (4, 4) if smoke else (AGENTS, DRIVEN)
    turns, concurrency, searches = (40, 2, 10) if smoke else (TURNS, CONCURRENCY, SEARCHES)
    turns = int(os.environ.get(TURNS_ENV) or turns)
    points: dict[str, Any] = {}
    for size in sizes:
        data, indexed = await _seeded(h, size, agents)
        ids = seed.agent_ids(data, f"idx{size}-")
        h.start_memproxy(data)
        warm_errors = await warm_agents(h, ids[:driven])
        assert h.memproxy is not None
        await wait_quiet(h.memproxy)
        point = await _window(h, ids[:driven], turns, concurrency)
        point.update(indexed=indexed, warmup_errors=warm_errors)
        point["search"] = await _search(h, ids, searches)
        point["freshness"] = await _freshness(h, ids[0])
        points[f"n{size}"] = point
        h.log(f"indexcost {size}: indexer {point.get('indexer_ms_per_turn', 0.0):.3f} CPU-ms/turn, process "
              f"{point['process_ms_per_turn']:.3f}, {point['turns_per_s']:.0f} turns/s; search p50 "
              f"{point['search']['latency_ms']['p50']:.2f} ms; fresh after {point['freshness']['found_after_s']} s")
        h.stop_memproxy()
    result = SuiteResult()
    result.figures = {"recall": points}
    base = points[f"n{sizes[0]}"].get("indexer_ms_per_turn", 0.0)
    rows = []
    for size in sizes:
        p = points[f"n{size}"]
        rows.append([size, p["turns"], f"{p.get('indexer_ms_per_turn', 0.0):.3f}",
                     f"{p.get('indexer_ms_per_turn', 0.0) / base:.2f}x" if base else "-", f"{p.get('event_loop_ms_per_turn', 0.0):.3f}",
                     f"{p['process_ms_per_turn']:.3f}", f"{p['turns_per_s']:.0f}",
                     f"{p['search']['latency_ms']['p50']:.2f} / {p['search']['latency_ms']['p99']:.2f}",
                     p["freshness"]["found_after_s"], p["errors"]])
    result.tables.append(Table("Recall indexer CPU per turn and search latency vs indexed messages",
                               ["indexed", "turns", "indexer ms/turn", f"vs {sizes[0]}", "event loop ms/turn",
                                "process ms/turn", "turns/s", "search p50 / p99 ms", "fresh after s", "errors"],
                               rows))
    return result
