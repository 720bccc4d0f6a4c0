"""Tool step: turns where the model makes one tool call and then answers; what the step costs memproxy.

Three kinds of tool in the same run, on the same agents, interleaved with plain turns: a built-in memory edit
(`memory_insert`), a custom Python tool (run in the sandbox) and an MCP tool (a stdio server memproxy starts).
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
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench import seed
from bench.harness import Harness
from bench.loadgen import Result, close_all, open_conns
from bench.stats import paired_diffs, summary
from bench.suite import SuiteResult, Table
from bench.suites.common import agent_request, warm_agents

CUSTOM_TOOL = '''
def city_initials(city: str) -> str:
    """The first three letters of a city, capitalised."""
    return city[:3].upper()
'''
MCP_SERVER = str(Path(__file__).resolve().parent.parent / "mcp_server.py")
CALLS = {
    "memory": ("memory_insert", {"label": "human", "new_str": "Mentioned a new hobby: pottery."}),
    "custom": ("city_initials", {"city": "Lisbon"}),
    "mcp": ("city_code", {"city": "Lisbon"}),
}
KINDS = ("plain", *CALLS)
# Each round sends the kinds in a rotated order so none always goes first.
ROTATIONS = [KINDS[i:] + KINDS[:i] for i in range(len(KINDS))]


def script(kind: str) -> list[dict[str, Any]]:
    name, arguments = CALLS[kind]
    return [{"tool_calls": [{"name": name, "arguments": arguments}]}, {"reply": "Noted, thank you."}]


async def _install_tools(base: str, agent_ids: list[str]) -> None:
    """The custom tool and the MCP server's tool, created over the API and attached to every agent."""
    async with httpx.AsyncClient(base_url=base, timeout=60.0) as client:
        custom = (await client.post("/v1/tools/", json={"source_code": CUSTOM_TOOL})).raise_for_status().json()
        server = (await client.post("/v1/mcp-servers/", json={
            "server_name": "bench", "command": sys.executable, "args": [MCP_SERVER]})).raise_for_status().json()
        mcp = (await client.post(f"/v1/mcp-servers/{server['id']}/tools/city_code")).raise_for_status().json()
        for agent in agent_ids:
            for tool in (custom, mcp):
                (await client.patch(f"/v1/agents/{agent}/tools/attach/{tool['id']}")).raise_for_status()


async def _tool_of_runs(base: str, agent_ids: list[str]) -> dict[str, str]:
    """run id -> the name of the tool the run called, from the agents' histories."""
    names: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=60.0) as client:
        for agent in agent_ids:
            response = await client.get(f"/v1/agents/{agent}/messages", params={"limit": 1000})
            for message in response.raise_for_status().json():
                if message.get("message_type") == "tool_return_message" and message.get("run_id"):
                    names[message["run_id"]] = message["name"]
    return names


async def run(h: Harness) -> SuiteResult:
    turns = h.scale.toolstep_turns
    per_agent = h.scale.turns_per_agent // len(KINDS) or 1  # a round is one turn of each kind on one agent
    count = -(-turns // per_agent)
    data = h.new_data_dir("toolstep")
    ids = seed.clone_agents(data, h.template_id, count, seed.IN_CONTEXT - 2 * len(KINDS), tag="toolstep")
    mp = h.start_memproxy(data)
    await _install_tools(mp.base, ids)
    await warm_agents(h, ids)
    h.log(f"toolstep: {turns} rounds of (plain, memory, custom, MCP tool turn) on {count} agents")
    zero = h.profile("zero")
    headers = {kind: {**zero, "X-Sim-Script": orjson.dumps(script(kind)).decode()} for kind in CALLS}
    headers["plain"] = zero
    conn = (await open_conns(mp.port, 1))[0]
    results: dict[str, dict[Any, Result]] = {kind: {} for kind in KINDS}
    for r in range(turns):
        agent = ids[r // per_agent]
        for kind in ROTATIONS[r % len(ROTATIONS)]:
            results[kind][r] = await conn.send(agent_request(agent, headers[kind]), kind)
    close_all([conn])
    runs = [run for agent in ids for run in await h.runs(agent)]
    tool_of = await _tool_of_runs(mp.base, ids)
    h.stop_memproxy()
    measured = [r for r in runs if r.get("status") == "completed" and (r.get("timings") or {}).get("total_ms")]
    # Plain one-step runs include each agent's warm-up turn: the same shape, so they count as plain turns.
    plain_runs = [r["timings"] for r in measured if r.get("steps") == 1]
    plain_overhead = [t["total_ms"] - t["upstream_ms"] for t in plain_runs]
    base = statistics.median(plain_overhead) if plain_overhead else float("nan")
    figures: dict[str, Any] = {
        "plain_turns": len(plain_runs),
        "errors": sum(not r.ok for by_round in results.values() for r in by_round.values()),
        "overhead_plain_turn_ms": summary(plain_overhead),
        "client_e2e_plain_ms": summary(r.e2e_ms for r in results["plain"].values() if r.ok),
    }
    plain_e2e: dict[Any, float | None] = {k: r.e2e_ms for k, r in results["plain"].items() if r.ok}
    for kind, (name, _) in CALLS.items():
        # The memory tool's figures keep their original names; the other kinds are prefixed.
        prefix = "" if kind == "memory" else f"{kind}_"
        tool_runs = [r["timings"] for r in measured if r.get("steps") == 2 and tool_of.get(r["id"]) == name]
        overhead = [t["total_ms"] - t["upstream_ms"] for t in tool_runs]
        figures.update({
            f"{prefix}tool_turns": len(tool_runs),
            f"{prefix}tool_ms": summary(t.get("tool_ms", 0.0) for t in tool_runs),
            f"{prefix}overhead_tool_turn_ms": summary(overhead),
            f"{prefix}step_gap_ms": summary(v - base for v in overhead),
            f"{prefix}client_added_e2e_ms": summary(paired_diffs(
                {k: r.e2e_ms for k, r in results[kind].items() if r.ok}, plain_e2e)),
        })
    result = SuiteResult(figures=figures)
    headers_row = ["tool", "measure", "n", "p50", "p90", "p99", "max"]
    labels = [("tool_ms", "tool execution (run.tool_ms)"),
              ("step_gap_ms", "tool step gap (see note)"),
              ("overhead_tool_turn_ms", "tool turn total - upstream"),
              ("client_added_e2e_ms", "client e2e, tool turn - plain turn")]
    rows = []
    for kind, (name, _) in CALLS.items():
        prefix = "" if kind == "memory" else f"{kind}_"
        for key, label in labels:
            f = figures[prefix + key]
            rows.append([name, label, f["n"], f["p50"], f["p90"], f["p99"], f["max"]])
    f = figures["overhead_plain_turn_ms"]
    rows.append(["(none)", "plain turn total - upstream", f["n"], f["p50"], f["p90"], f["p99"], f["max"]])
    result.tables = [Table("Tool step (ms; one tool call then a reply, zero-delay simulator): a memory edit, "
                           "a custom Python tool (sandbox), an MCP tool (stdio)", headers_row, rows)]
    result.notes.append("step gap = (total_ms - upstream_ms) of a tool turn minus the median of the same for "
                        "plain turns: tool execution + persisting the call and result + rebuilding the prompt, "
                        "i.e. from the end of the tool-call stream to the next upstream request.")
    for kind in CALLS:
        prefix = "" if kind == "memory" else f"{kind}_"
        gap = figures[prefix + "step_gap_ms"]
        h.log(f"toolstep {kind}: step gap p50 {gap['p50']:.2f} ms, p99 {gap['p99']:.2f} ms")
    return result
