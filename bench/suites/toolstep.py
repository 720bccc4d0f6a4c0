"""Tool step: a turn where the model makes one memory edit and then answers; what the step costs memproxy.

From each run's timings (measured inside memproxy, perf_counter):
  overhead_ms = total_ms - upstream_ms   (time the turn spent outside upstream streams)
For a plain one-step turn that is: input bookkeeping + one prompt build. For a tool turn it adds the
tool step, i.e. everything between the end of the upstream's tool-call stream and the start of the
next upstream request: tool execution (`tool_ms`), persisting the call and result, rebuilding the
prompt. So, per tool turn,
  step_gap_ms = overhead_ms(tool turn) - median overhead_ms(plain turns of the same run)
The client-side view is added e2e: e2e(tool turn) - e2e(paired plain turn), which also contains the
second upstream round-trip to the (zero-delay) simulator.
"""

from __future__ import annotations

import statistics
from typing import Any

import orjson

from bench import seed
from bench.harness import Harness
from bench.loadgen import Result, close_all, open_conns
from bench.stats import paired_diffs, summary
from bench.suite import SuiteResult, Table
from bench.suites.common import agent_request, warm_agents

SCRIPT = [{"tool_calls": [{"name": "memory_insert",
                           "arguments": {"label": "human", "new_str": "Mentioned a new hobby: pottery."}}]},
          {"reply": "Noted, I will remember that you took up pottery."}]


async def run(h: Harness) -> SuiteResult:
    turns = h.scale.toolstep_turns
    per_agent = h.scale.turns_per_agent // 2 or 1  # each round is two turns on the same agent
    count = -(-turns // per_agent)
    data = h.new_data_dir("toolstep")
    ids = seed.clone_agents(data, h.template_id, count, seed.IN_CONTEXT - 2, tag="toolstep")
    mp = h.start_memproxy(data)
    await warm_agents(h, ids)
    h.log(f"toolstep: {turns} rounds of (plain turn, memory-edit turn) on {count} agents")
    zero = h.profile("zero")
    tool_headers = {**zero, "X-Sim-Script": orjson.dumps(SCRIPT).decode()}
    conn = (await open_conns(mp.port, 1))[0]
    plain: dict[Any, Result] = {}
    tool: dict[Any, Result] = {}
    for r in range(turns):
        agent = ids[r // per_agent]
        pair = [("plain", agent_request(agent, zero)), ("tool", agent_request(agent, tool_headers))]
        for kind, request in pair if r % 2 == 0 else pair[::-1]:
            result = await conn.send(request, kind)
            (plain if kind == "plain" else tool)[r] = result
    close_all([conn])
    runs = [run for agent in ids for run in await h.runs(agent)]
    h.stop_memproxy()
    measured = [r for r in runs if r.get("status") == "completed" and (r.get("timings") or {}).get("total_ms")]
    # Plain one-step runs include each agent's warm-up turn: the same shape, so they count as plain turns.
    tool_runs = [r["timings"] for r in measured if r.get("steps") == 2]
    plain_runs = [r["timings"] for r in measured if r.get("steps") == 1]
    plain_overhead = [t["total_ms"] - t["upstream_ms"] for t in plain_runs]
    tool_overhead = [t["total_ms"] - t["upstream_ms"] for t in tool_runs]
    base = statistics.median(plain_overhead) if plain_overhead else float("nan")
    figures = {
        "tool_turns": len(tool_runs),
        "plain_turns": len(plain_runs),
        "errors": sum(not r.ok for r in [*plain.values(), *tool.values()]),
        "tool_ms": summary(t.get("tool_ms", 0.0) for t in tool_runs),
        "overhead_tool_turn_ms": summary(tool_overhead),
        "overhead_plain_turn_ms": summary(plain_overhead),
        "step_gap_ms": summary(v - base for v in tool_overhead),
        "upstream_ms_tool_turn": summary(t["upstream_ms"] for t in tool_runs),
        "client_e2e_plain_ms": summary(r.e2e_ms for r in plain.values() if r.ok),
        "client_e2e_tool_ms": summary(r.e2e_ms for r in tool.values() if r.ok),
        "client_added_e2e_ms": summary(paired_diffs({k: r.e2e_ms for k, r in tool.items() if r.ok},
                                                    {k: r.e2e_ms for k, r in plain.items() if r.ok})),
        "client_ttft_tool_ms": summary(r.ttft_ms for r in tool.values() if r.ok and r.ttft_ms is not None),
    }
    result = SuiteResult(figures=figures)
    headers = ["measure", "n", "p50", "p90", "p99", "max"]
    labels = [("tool_ms", "tool execution (run.tool_ms)"),
              ("step_gap_ms", "tool step gap (see note)"),
              ("overhead_tool_turn_ms", "tool turn total - upstream"),
              ("overhead_plain_turn_ms", "plain turn total - upstream"),
              ("client_added_e2e_ms", "client e2e, tool turn - plain turn"),
              ("client_ttft_tool_ms", "client TTFT of tool turns")]
    rows = [[label, figures[key]["n"], figures[key]["p50"], figures[key]["p90"], figures[key]["p99"],
             figures[key]["max"]] for key, label in labels]
    result.tables = [Table("Tool step (ms; one memory_insert then a reply, zero-delay simulator)", headers, rows)]
    result.notes.append("step gap = (total_ms - upstream_ms) of a tool turn minus the median of the same for "
                        "plain turns: tool execution + persisting the call and result + rebuilding the prompt, "
                        "i.e. from the end of the tool-call stream to the next upstream request.")
    h.log(f"toolstep: step gap p50 {figures['step_gap_ms']['p50']:.2f} ms, p99 {figures['step_gap_ms']['p99']:.2f} "
          f"ms; tool_ms p50 {figures['tool_ms']['p50']:.2f} ms")
    return result
