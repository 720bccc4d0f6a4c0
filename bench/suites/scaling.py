"""Scaling: added TTFT and memproxy's RSS as one agent's stored history and the agent count grow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import seed
from bench.harness import Harness
from bench.loadgen import Conn
from bench.stats import summary
from bench.suite import SuiteResult, Table
from bench.suites.common import added_figures, agent_request, paired_rounds, path_figures
from bench.report import save_figure

HISTORY_AGENTS = 2  # agents per history size, turns split between them
SAMPLE_AGENTS = 3  # fresh agents measured at each agent-count point
GROWTH_LIMIT_PCT = 20.0


async def _cold_ttft(h: Harness, agent_ids: list[str]) -> list[float]:
    """First turn of agents not yet loaded: includes reading them from the store."""
    assert h.memproxy is not None
    conn = await Conn(h.memproxy.port).open()
    out = []
    for agent_id in agent_ids:
        result = await conn.send(agent_request(agent_id, h.profile("zero")), "cold")
        if result.ok and result.ttft_ms is not None:
            out.append(result.ttft_ms)
    conn.close()
    return out


async def _measure(h: Harness, agent_ids: list[str]) -> dict[str, Any]:
    rounds = h.scale.scaling_rounds
    per_agent = max(1, -(-rounds // len(agent_ids)))
    results = await paired_rounds(h, ("direct", "agent"), [agent_ids], rounds, per_agent, h.profile("zero"))
    assert h.memproxy is not None
    return {"added_ttft_ms": added_figures(results, "agent")["ttft_ms"],
            "agent_ttft_ms": path_figures(results["agent"])["ttft_ms"],
            "errors": sum(not r.ok for rs in results.values() for r in rs),
            "rss_mb": h.memproxy.rss_kb() / 1024}


async def run(h: Harness) -> SuiteResult:
    scale = h.scale
    data = h.new_data_dir("scaling")
    history_ids = {n: seed.clone_agents(data, h.template_id, HISTORY_AGENTS, n, tag=f"history{n}")
                   for n in scale.scaling_history}
    existing = 1 + HISTORY_AGENTS * len(scale.scaling_history)
    regular: list[str] = []
    result = SuiteResult()
    history: dict[str, Any] = {}
    agents: dict[str, Any] = {}
    for count in scale.scaling_agents:
        missing = max(SAMPLE_AGENTS, count - existing)
        regular += seed.clone_agents(data, h.template_id, missing, seed.IN_CONTEXT, tag=f"count{count}")
        existing += missing
        h.log(f"scaling: store holds {existing} agents ({seed.count_rows(data)['messages']} messages)")
        mp = h.start_memproxy(data)
        rss_start = mp.rss_kb() / 1024
        if not history:
            for n, ids in history_ids.items():
                cold = await _cold_ttft(h, ids)
                point = await _measure(h, ids)
                point["cold_ttft_ms"] = summary(cold)
                history[f"h{n}"] = point
                h.log(f"scaling history {n}: added TTFT p50 {point['added_ttft_ms']['p50']:.2f} ms, "
                      f"cold TTFT {point['cold_ttft_ms']['max']:.1f} ms, RSS {point['rss_mb']:.0f} MB")
        sample = regular[-SAMPLE_AGENTS:]
        cold = await _cold_ttft(h, sample)
        to_load = [a for a in regular[:max(0, scale.scaling_loaded_agents - SAMPLE_AGENTS)] if a not in sample]
        rss_before = mp.rss_kb()
        load_s = await h.load_agents(to_load)
        rss_loaded = mp.rss_kb()
        point = await _measure(h, sample)
        point.update(cold_ttft_ms=summary(cold), agents=existing, loaded=len(to_load) + len(sample), load_s=load_s,
                     load_ms_per_agent=1000 * load_s / max(1, len(to_load)), rss_start_mb=rss_start,
                     rss_per_loaded_agent_kb=(rss_loaded - rss_before) / max(1, len(to_load)))
        agents[f"a{count}"] = point
        h.log(f"scaling agents {existing}: loaded {point['loaded']} in {load_s:.1f}s, added TTFT p50 "
              f"{point['added_ttft_ms']['p50']:.2f} ms, RSS {point['rss_mb']:.0f} MB")
        h.stop_memproxy()
    result.figures = {"history": history, "agents": agents,
                      "history_growth_pct": _growth(history), "agents_growth_pct": _growth(agents)}
    result.tables = _tables(history, agents)
    result.notes.append(
        f"growth_pct = change of the added-TTFT p50 from the smallest to the largest point (target within "
        f"{GROWTH_LIMIT_PCT:.0f}%); at ~1 ms a few tenths of a millisecond of noise already move it by 20%. "
        "Cold TTFT is an agent's first turn after start-up, when memproxy reads it from the store. "
        "At each agent-count point only `loaded` agents are pulled into memproxy's live cache (GET "
        "/v1/agents/{id}); `rss_per_loaded_agent_kb` (RSS growth while loading them, per agent; noisy "
        "below ~100 agents) extrapolates RSS to more loaded agents.")
    return result


def _growth(points: dict[str, Any]) -> float:
    values = [p["added_ttft_ms"]["p50"] for p in points.values()]
    return 100.0 * (values[-1] / values[0] - 1.0) if len(values) > 1 and values[0] else 0.0


def _tables(history: dict[str, Any], agents: dict[str, Any]) -> list[Table]:
    headers = ["point", "+TTFT p50", "+TTFT p90", "+TTFT p99", "agent TTFT p50", "cold TTFT max", "RSS MB",
               "KB/loaded agent", "errors"]

    def row(label: str, p: dict[str, Any]) -> list[Any]:
        added = p["added_ttft_ms"]
        return [label, added["p50"], added["p90"], added["p99"], p["agent_ttft_ms"]["p50"],
                p["cold_ttft_ms"]["max"], p["rss_mb"], p.get("rss_per_loaded_agent_kb", ""), p["errors"]]

    rows = [row(f"history {k[1:]} msgs", p) for k, p in history.items()]
    rows += [row(f"{p['agents']} agents ({p['loaded']} loaded)", p) for p in agents.values()]
    return [Table("Scaling (ms; + = paired difference vs direct, zero-delay simulator, concurrency 1)", headers, rows)]


def plot(result: SuiteResult, out_dir: Path, stem: str) -> list[str]:
    import matplotlib.pyplot as plt

    history, agents = result.figures.get("history", {}), result.figures.get("agents", {})
    if not history or not agents:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [int(k[1:]) for k in history]
    for q in ("p50", "p99"):
        left.plot(xs, [p["added_ttft_ms"][q] for p in history.values()], marker="o", label=f"added TTFT {q}")
    left.set_xscale("log")
    left.set_xlabel("stored messages of the agent (50 in context)")
    left.set_ylabel("ms")
    left.set_title("Added TTFT vs history size")
    xs = [p["agents"] for p in agents.values()]
    for q in ("p50", "p99"):
        right.plot(xs, [p["added_ttft_ms"][q] for p in agents.values()], marker="o", label=f"added TTFT {q}")
    right.set_xscale("log")
    right.set_xlabel("agents in the store")
    right.set_ylabel("ms")
    right.set_title("Added TTFT and RSS vs agent count")
    rss = right.twinx()
    rss.plot(xs, [p["rss_mb"] for p in agents.values()], color="grey", linestyle="--", marker="s", label="RSS")
    rss.set_ylabel("memproxy RSS (MB)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    rss.legend(fontsize=8, loc="upper right")
    return save_figure(fig, out_dir, f"{stem}-scaling.png")
