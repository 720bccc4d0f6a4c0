"""Keep every upstream request inside the model's window by evicting old messages into a summary.

The common case costs a few microseconds: cached token counts are summed and compared. Past the
high-water mark a compaction starts in the background after the turn, so the next turn rarely
waits; only a turn that would overflow waits for it (or compacts inline).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable

from memory.agents import AgentMemory, LiveAgent
from memory.context import wire_message
from memory.models import Message
from memory.protocols import Spawn, Summarizer
from memory.summary import build_summary_request, summary_message_text, truncate_fallback
from memory.tokens import UsageCalibration, context_window_for, default_counter
from memory.window import needs_eviction, past_high_water, plan_eviction, reply_reserve

log = logging.getLogger("memproxy.compaction")


@dataclass(frozen=True)
class Budget:
    """One measurement of what the next request would cost, in upstream-calibrated tokens."""

    estimate: int  # our own count, before calibration
    total: int  # calibrated
    window: int
    reserve: int

    @property
    def fits(self) -> bool:
        return not needs_eviction(self.total, self.window, self.reserve)


def is_summary(message: Message) -> bool:
    return message.role == "system" and message.metadata.get("kind") == "summary"


class ContextBudget:
    """Token accounting and compaction for every agent."""

    def __init__(self, memory: AgentMemory, summarize: Summarizer, spawn: Spawn, *,
                 high_water: float = 0.75, fraction: float = 0.30, summary_timeout: float = 60.0,
                 default_window: int = 128_000) -> None:
        self.memory = memory
        self.summarize = summarize
        self.spawn = spawn
        self.high_water = high_water
        self.fraction = fraction
        self.summary_timeout = summary_timeout
        self.default_window = default_window
        self.counter = default_counter()
        # The last tools list counted, by identity: a turn's lists are built once and never mutated (the
        # registry's shared lists neither), so its budget checks and `after_turn` encode the schemas once.
        self._tools_counted: tuple[list[dict[str, Any]] | None, int] = (None, 0)

    # --- measuring --------------------------------------------------------------------------
    def window_of(self, live: LiveAgent) -> tuple[int, int]:
        window = context_window_for(live.agent.model, live.agent.context_window_limit, self.default_window)
        learned = live.extra.get("learned_window")
        if learned is not None:
            window = min(window, learned)
        return window, reply_reserve(window)

    def learn_window(self, live: LiveAgent, upstream_message: str) -> int:
        """The upstream refused a request as too long: believe the limit it states, else shrink by a fifth."""
        window, _ = self.window_of(live)
        stated = re.search(r"maximum context length is (\d+)", upstream_message)
        learned = int(stated.group(1)) if stated else int(window * 0.8)
        live.extra["learned_window"] = min(learned, window)
        log.warning("agent %s: the upstream's window is smaller than configured; using %d tokens", live.id,
                    live.extra["learned_window"])
        return live.extra["learned_window"]

    def calibration(self, live: LiveAgent) -> UsageCalibration:
        calibration = live.extra.get("calibration")
        if calibration is None:
            calibration = live.extra["calibration"] = UsageCalibration()
        return calibration

    def _prompt_tokens(self, live: LiveAgent, prompt: str) -> int:
        cached = live.extra.get("prompt_tokens")
        if cached is not None and cached[0] is prompt:
            return cached[1]
        count = self.counter.count_text(prompt) + 4
        live.extra["prompt_tokens"] = (prompt, count)
        return count

    def fixed_tokens(self, live: LiveAgent, prompt: str, instructions: list[dict[str, Any]],
                     tools: list[dict[str, Any]]) -> int:
        total = self._prompt_tokens(live, prompt) + self._tool_tokens(tools) + 3
        for instruction in instructions:
            total += self.counter.count_message(instruction)
        return total

    def _tool_tokens(self, tools: list[dict[str, Any]]) -> int:
        counted, count = self._tools_counted
        if counted is not tools:
            count = self.counter.count_tools(tools)
            self._tools_counted = (tools, count)
        return count

    def message_tokens(self, live: LiveAgent, message: Message) -> int:
        """Tokens of one in-context message, counted once."""
        return live.in_context.message_tokens(message, self.counter)

    def measure(self, live: LiveAgent, prompt: str, instructions: list[dict[str, Any]],
                tools: list[dict[str, Any]], *, bound_ok: bool = False) -> Budget:
        """What the next request costs: the fixed part plus the running total of the in-context messages.

        With `bound_ok` new messages may be taken at an upper bound of their tokens (see memory/incontext.py).
        """
        estimate = self.fixed_tokens(live, prompt, instructions, tools)
        estimate += live.in_context.tokens(live.messages, self.counter, bound_ok)
        window, reserve = self.window_of(live)
        return Budget(estimate, self.calibration(live).corrected(estimate), window, reserve)

    def observe(self, live: LiveAgent, estimate: int, reported_prompt_tokens: int) -> None:
        """The upstream's reported usage corrects our estimate for this agent from now on."""
        if estimate > 0 and reported_prompt_tokens > 0:
            self.calibration(live).observe(estimate, reported_prompt_tokens)

    def _measure_lazily(self, live: LiveAgent, prompt: str, instructions: list[dict[str, Any]],
                        tools: list[dict[str, Any]], enough: Callable[[Budget], bool]) -> Budget:
        """`measure` with new messages at their bounds, counted (and measured again) only when the bounded
        budget is not `enough`: a bound saves the tokenizer's time, it never changes a decision."""
        budget = self.measure(live, prompt, instructions, tools, bound_ok=True)
        if not enough(budget) and live.in_context.bounded:
            budget = self.measure(live, prompt, instructions, tools)
        return budget

    # --- keeping requests inside the window -------------------------------------------------
    async def ensure_fits(self, live: LiveAgent, prompt_of: Callable[[], str], instructions: list[dict[str, Any]],
                          tools: list[dict[str, Any]], *, harder: bool = False) -> Budget:
        """Return the budget of the next request, compacting first when it would not fit.

        A budget that fits may hold upper bounds for the newest messages (`live.in_context.settle` counts
        them, and says by how much the estimate dropped); every decision to compact is taken on counts.
        """
        if not harder:
            budget = self._measure_lazily(live, prompt_of(), instructions, tools, lambda b: b.fits)
            if budget.fits:
                return budget
        running: asyncio.Task[None] | None = live.extra.get("compaction")
        if running is not None and not running.done() and not harder:
            await asyncio.shield(running)
            budget = self.measure(live, prompt_of(), instructions, tools)
            if budget.fits:
                return budget
        margin = 0.8 if harder else 1.0  # after an overflow error, leave a fifth of the window spare
        await self.compact(live, prompt_of(), instructions, tools, must_fit=True, margin=margin)
        return self.measure(live, prompt_of(), instructions, tools)

    async def quiesce(self, live: LiveAgent) -> None:
        """Wait for a background compaction of this agent to finish (before its history is reset)."""
        running: asyncio.Task[None] | None = live.extra.get("compaction")
        if running is not None and not running.done():
            await asyncio.gather(asyncio.shield(running), return_exceptions=True)

    def after_turn(self, live: LiveAgent, prompt: str, tools: list[dict[str, Any]]) -> None:
        """Past the high-water mark, compact in the background so the next turn need not wait.

        Runs between a turn's finish chunk and its end: the reply is taken at its bound unless that reaches
        the mark, and the next turn counts it once its request is out.
        """
        def below_mark(budget: Budget) -> bool:
            return not past_high_water(budget.total, budget.window, self.high_water)

        if below_mark(self._measure_lazily(live, prompt, [], tools, below_mark)):
            return
        running = live.extra.get("compaction")
        if running is not None and not running.done():
            return
        live.extra["compaction"] = self.spawn(self.compact(live, prompt, [], tools, must_fit=False),
                                              name=f"compact-{live.id}")

    async def compact(self, live: LiveAgent, prompt: str, instructions: list[dict[str, Any]],
                      tools: list[dict[str, Any]], *, must_fit: bool, margin: float = 1.0,
                      fraction: float | None = None) -> int:
        """Evict the oldest turns into a new recursive summary; returns how many messages left the context."""
        lock: asyncio.Lock = live.extra.setdefault("compaction_lock", asyncio.Lock())
        async with lock:
            previous = next((m for m in live.messages if is_summary(m)), None)
            body = [m for m in live.messages if m is not previous]
            if not body:
                return 0
            ratio = self.calibration(live).ratio or 1.0
            window, reserve = self.window_of(live)
            fixed = self.fixed_tokens(live, prompt, instructions, tools)
            if previous is not None:
                fixed += self.message_tokens(live, previous)
            triples = [(m.id, wire_message(m), self.message_tokens(live, m)) for m in body]
            plan = plan_eviction(triples, fixed_tokens=fixed, window=int(window * margin / ratio),
                                 reserve=int(reserve / ratio), fraction=self.fraction if fraction is None else fraction,
                                 must_fit=must_fit)
            if plan.evict_count == 0:
                return 0
            evicted = body[:plan.evict_count]
            old_summary = previous.metadata.get("summary") if previous is not None else None
            hidden = (previous.metadata.get("hidden", 0) if previous is not None else 0) + len(evicted)
            text = await self._summarize(live, old_summary, [wire_message(m) for m in evicted], window)
            gone = {m.id for m in evicted} | ({previous.id} if previous is not None else set())
            await self.memory.put_summary(live, summary_message_text(text, len(evicted), hidden),
                                          {"kind": "summary", "summary": text, "hidden": hidden}, gone)
            log.info("agent %s: %d messages evicted into a summary (%d hidden in all)", live.id, len(evicted), hidden)
            return len(evicted)

    async def _summarize(self, live: LiveAgent, previous: str | None, evicted: list[dict[str, Any]],
                         window: int) -> str:
        # The summary call must fit the window too: keep its transcript to about half of it (3 chars a token
        # is conservative), the rest is the prompt, the previous summary and the reply.
        request = build_summary_request(previous, evicted, live.agent.model, max_tokens=min(1024, window // 4),
                                        max_transcript_chars=window * 3 // 2)
        try:
            text = await asyncio.wait_for(self.summarize(request), timeout=self.summary_timeout)
            if text and text.strip():
                return text.strip()
            raise ValueError("empty summary")
        except Exception as exc:  # noqa: BLE001 - any failure falls back; the turn must go on
            log.warning("agent %s: summary call failed (%s); falling back to truncation", live.id,
                        type(exc).__name__)
            return truncate_fallback(previous, evicted)
