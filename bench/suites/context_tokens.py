"""Context, part (b): what counting an agent's in-context tokens costs per turn, measured in the bench process.

`ContextBudget.measure()` on an agent with N in-context messages: cold (nothing counted yet), warm
(everything cached), and per turn (warm plus one new message, the oldest dropped).
"""

from __future__ import annotations

import gc
import time
from datetime import date
from typing import Any

from bench import seed
from bench.stats import summary


def _live_agent(n: int, salt: str) -> Any:
    from memory.agents import LiveAgent
    from memory.models import Agent, Block

    blocks = [Block(id=f"block-{salt}-{i}", label=b["label"], value=b["value"])
              for i, b in enumerate(seed.TEMPLATE_AGENT["memory_blocks"])]  # type: ignore[index]
    agent = Agent(id=f"agent-{salt}", name="tokens", system=str(seed.TEMPLATE_AGENT["system"]),
                  block_ids=[b.id for b in blocks])
    messages = [_message(agent.id, i, salt) for i in range(n)]
    return LiveAgent(agent=agent, blocks=blocks, messages=messages, next_seq=n + 1, recall_count=n)


def _message(agent_id: str, i: int, salt: str) -> Any:
    from memory.models import Message

    if i % 2 == 0:
        text = (f"Question {salt}-{i}: what should I pack for the trip, and can you remind me about the dog "
                "sitter?")
    else:
        text = (f"Answer {salt}-{i}: pack light layers and a rain jacket; I will remind you about Miso's sitter "
                "on Friday.")
    return Message(id=f"message-{salt}-{i}", agent_id=agent_id, seq=i + 1,
                   role="user" if i % 2 == 0 else "assistant", content=text)


def token_counting(sz: dict[str, Any]) -> dict[str, Any]:
    from memory.compaction import ContextBudget
    from memory.compile import MemoryMetadata, compile_system_prompt
    from memory.tokens import TokenCounter
    from tools.registry import default_registry

    registry = default_registry()
    tools = registry.schemas(tuple(registry.names()))
    out: dict[str, Any] = {}
    serial = 0
    for n in sz["token_sizes"]:
        cold, warm, per_turn = [], [], []
        for rep in range(sz["cold_reps"]):
            budget = ContextBudget(None, None, None)  # type: ignore[arg-type]
            counter = TokenCounter()  # a fresh text cache: nothing counted yet
            counter.load()
            budget.counter = counter
            salt = f"{n}-{rep}-{time.monotonic_ns()}"
            live = _live_agent(n, salt)
            prompt = compile_system_prompt(live.agent.system, live.blocks, MemoryMetadata(today=date.today()))
            gc.disable()
            try:
                t0 = time.perf_counter()
                budget.measure(live, prompt, [], tools)
                cold.append((time.perf_counter() - t0) * 1000)
                if rep == 0:
                    for _ in range(sz["warm_reps"]):
                        t0 = time.perf_counter()
                        budget.measure(live, prompt, [], tools)
                        warm.append((time.perf_counter() - t0) * 1000)
                    for _ in range(sz["warm_reps"]):
                        serial += 1
                        live.messages.append(_message(live.id, n + serial, salt))
                        del live.messages[0]
                        t0 = time.perf_counter()
                        budget.measure(live, prompt, [], tools)
                        per_turn.append((time.perf_counter() - t0) * 1000)
            finally:
                gc.enable()
        out[f"m{n}"] = {"messages": n, "cold_ms": summary(cold), "warm_ms": summary(warm),
                        "per_turn_ms": summary(per_turn)}
    return out
