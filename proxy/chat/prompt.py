"""What a turn's steps send upstream: the agent's context caught up, fit to its window and spliced after the head.

The budget takes new messages at an upper bound of their tokens; they are counted once the request is on its way,
and the upstream's reported prompt tokens calibrate the agent against the estimate once that is a count.
"""

from __future__ import annotations

from typing import Any

from memory.agents import AgentMemory, LiveAgent
from memory.compaction import ContextBudget
from memory.context import message_parts, splice_messages
from memory.incontext import Estimate
from memory.tokens import default_counter
from proxy.upstream import UpstreamError

# Messages counted per pass of the event loop after a request is sent: 8-30 us each (caches warm or cold), so
# ~0.25 ms at most between two chunks of other streams per agent loading (a freshly loaded 5,000-message history
# counted at once took 40-140 ms; in slices of 32, ~1 ms, a turn sent right after met ~1 ms more). A loop with
# nothing else to do runs the passes back to back.
SETTLE_SLICE = 8
# Messages of a freshly loaded history encoded (and bounded) per pass of the loop before the first request: ~6 us
# each, so ~1 ms between other streams' chunks.
SYNC_STEP = 160


class Prompt:
    """One turn's requests to the upstream, and the estimate of the latest one that its usage calibrates."""

    __slots__ = ("memory", "budget", "live", "instructions", "estimate")

    def __init__(self, memory: AgentMemory, budget: ContextBudget | None, live: LiveAgent,
                 instructions: list[dict[str, Any]]) -> None:
        self.memory = memory
        self.budget = budget  # None: no token accounting, the context is never compacted
        self.live = live
        self.instructions = instructions  # the request's own system and developer messages, after the agent's
        self.estimate: Estimate | None = None  # the latest request's tokens, as the budget saw them

    async def body(self, head: bytes, tools: list[dict[str, Any]],
                   harder: bool = False) -> list[bytes | memoryview]:
        """A step's request body: `head` (its JSON without the closing brace) and the agent's messages; raises a 400
        `UpstreamError` when even an empty history leaves the input over the window."""
        live, budget = self.live, self.budget
        counter = budget.counter if budget is not None else default_counter()
        # A freshly loaded history is encoded a step per pass of the loop, not in the budget check's one pass.
        await live.in_context.catch_up(live.messages, counter, SYNC_STEP)
        if budget is not None:
            fit = await budget.ensure_fits(live, lambda: self.memory.system_prompt(live), self.instructions, tools,
                                           harder=harder)
            if not fit.fits:
                raise UpstreamError(400, f"the input does not fit the agent's context window of {fit.window} "
                                    "tokens even after evicting all earlier messages", code="context_length_exceeded")
            self.estimate = live.in_context.estimate(fit.estimate)
        body = splice_messages(head, message_parts(live, self.memory.system_prompt(live), self.instructions))
        # Counting a short message costs ~100 us of tokenizer on caches gone cold since the last turn: the bounded
        # ones are counted from the turn's first wait (on the upstream), not before the client's first token; a
        # freshly loaded history a slice per pass of the loop. (Nothing bounded: no-op.)
        live.in_context.settle_soon(counter, SETTLE_SLICE)
        return body

    def observe(self, reported: int) -> None:
        """The upstream's prompt tokens for the latest request: they calibrate the agent's budget once its estimate
        is a count (at once in a steady conversation; after the last slice for a freshly loaded history, which
        the stream does not wait for)."""
        budget, live, estimate = self.budget, self.live, self.estimate
        if budget is not None and estimate is not None:
            estimate.when_exact(lambda tokens: budget.observe(live, tokens, reported))
