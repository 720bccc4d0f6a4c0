"""A populated embedded data dir for the export/import tests and the move bench (importable as `portable_data`).

Records are written through the store and long-term memory interfaces, as a server writes them:
agents with blocks, runs, messages (a few in context, the rest evicted), custom tools, an MCP server, and
passages.
Every message and passage carries a word of its own (`msgword<i>`, `pword<i>`), so a search for that
word has one right answer on every backend, whatever its ranking function.
"""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta, timezone

from memory.backends import LANCE_DIR
from memory.duckdb_store import open_store
from memory.longterm import Embedder, LanceLongTermMemory
from memory.mcp_servers import McpServer
from memory.models import Agent, Block, Changes, Message, Run, Tool, new_id
from memory.recall import index_messages

TOPICS = ["lighthouse", "marmalade", "glacier", "violin", "harbour", "orchard", "comet", "lantern", "meadow",
          "canyon", "saffron", "tundra"]


async def populate(data_dir: str, *, agents: int = 3, messages: int = 300, passages: int = 100,
                   embedder: Embedder | None = None, seed: int = 7) -> dict[str, int]:
    """Fill `data_dir`; returns the count of each kind written."""
    rng = random.Random(seed)
    store = open_store(data_dir)
    longterm = LanceLongTermMemory(os.path.join(data_dir, LANCE_DIR), embedder)
    await store.open()
    await longterm.open()
    longterm.start_background()
    counts = {"mcp_server": 1, "tool": 1, "block": 1 + 2 * agents, "agent": agents, "run": 0, "message": 0,
              "passage": 0}
    try:
        await store.create_mcp_server(McpServer(
            id=new_id("mcp_server"), server_name="weather", type="streamable_http",
            server_url="https://mcp.example.test/mcp", auth_token="Bearer mcp-secret",
            custom_headers={"X-Team": "moved"},
            tools=[{"name": "forecast", "description": "Tomorrow's weather.",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]))
        await store.create_tool(Tool(id=new_id("tool"), name="roll_dice", description="Roll a die.",
                                     source_code="def roll_dice(sides: int) -> int:\n    return sides\n",
                                     json_schema={"name": "roll_dice", "description": "Roll a die.",
                                                  "parameters": {"type": "object",
                                                                 "properties": {"sides": {"type": "integer"}}}}))
        await store.create_block(Block(id=new_id("block"), label="shared", value="A block no agent uses."))
        start = datetime(2025, 3, 1, tzinfo=timezone.utc)
        ids = []
        for a in range(agents):
            blocks = [Block(id=new_id("block"), label="human", value=f"Name: person {a}"),
                      Block(id=new_id("block"), label="persona", value=f"I am agent {a}.", read_only=a == 0)]
            agent = Agent(id=new_id("agent"), name=f"agent-{a}", system="You are a test agent.",
                          tools=["roll_dice"], tags=["moved", f"n{a}"], metadata={"n": a},
                          tool_env={"DICE_KEY": f"secret-{a}"}, block_ids=[b.id for b in blocks],
                          timezone="Europe/Paris" if a == 1 else "UTC")
            await store.create_agent(agent, blocks)
            ids.append(agent.id)
        per_agent = messages // agents
        for a, agent_id in enumerate(ids):
            batch: list[Message] = []
            runs: list[Run] = []
            for i in range(per_agent):
                n = a * per_agent + i
                when = start + timedelta(minutes=n)
                if i % 2 == 0:
                    runs.append(Run(id=new_id("run"), agent_id=agent_id, status="completed", stop_reason="end_turn",
                                    steps=1, usage={"total_tokens": 10 + i}, created_at=when, completed_at=when))
                words = " ".join(rng.sample(TOPICS, 3))
                role = "user" if i % 2 == 0 else "assistant"
                batch.append(Message(id=new_id("message"), agent_id=agent_id, seq=i + 1, role=role,
                                     content=f"msgword{n} {words} note {i}", run_id=runs[-1].id,
                                     in_context=i >= per_agent - 6, metadata={"i": i}, created_at=when))
                if len(batch) == 100:
                    await _commit(store, longterm, batch, runs)
                    batch, runs = [], []
            await _commit(store, longterm, batch, runs)
            counts["message"] += per_agent
            counts["run"] += (per_agent + 1) // 2
        for p in range(passages):
            words = " ".join(rng.sample(TOPICS, 4))
            await longterm.add_passages(ids[p % agents], [(f"pword{p} {words} fact {p}", [TOPICS[p % 5]])],
                                        created_at=start + timedelta(hours=p), metadata={"p": p})
        counts["passage"] = passages
        await longterm.flush()
    finally:
        await longterm.close()
        await store.close()
    return counts


async def _commit(store: object, longterm: LanceLongTermMemory, messages: list[Message], runs: list[Run]) -> None:
    if not messages and not runs:
        return
    await store.commit(Changes(messages=messages, runs=runs, insert_only=True))  # type: ignore[attr-defined]
    index_messages(longterm, messages, frozenset())
