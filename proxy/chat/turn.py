"""One agent turn: call the upstream, run server tools, repeat; stream what the client should see."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from memory.agents import AgentMemory, LiveAgent
from memory.compaction import ContextBudget
from memory.models import Changes, Message, Run, new_id, utcnow
from memory.protocols import LongTermMemory, Spawn
from memory.store import FenceLost, StoreUnavailable
from proxy.chat.new_input import NewInput
from proxy.chat.prompt import Prompt
from proxy.chat.protocol import PLAIN_DELTA_KEYS, RELAYED_DELTA_FIELDS, ChatRequest
from proxy.chat.request_head import TurnHead
from proxy.chat.said import ModelOutput, add_usage, chunk_usage
from proxy import logs
from proxy.errors import APIError, database_unavailable
from proxy.metrics import Metrics
from proxy.protocols import ChatUpstream, TurnSink
from proxy.upstream import UpstreamError
from tools.protocols import Tools
from tools.registry import ToolContext
from proxy.chat.turn_rules import Call, RulesMixin
from tools.rules import FREE, Called, Rules, StepPlan, load

log = logging.getLogger("memproxy.turn")
_NO_RULES = Rules()


@dataclass
class TurnEnv:
    """What a turn needs from the runtime."""

    memory: AgentMemory
    upstream: ChatUpstream
    registry: Tools
    longterm: LongTermMemory | None  # None: no archival or recall search tools work
    max_steps: int
    spawn: Spawn
    budget: ContextBudget | None = None  # None: no token accounting, the context is never compacted
    on_messages: Callable[[list[Message]], None] | None = None  # after messages are committed (recall indexing)
    metrics: Metrics = field(default_factory=Metrics)


class Turn(RulesMixin):
    def __init__(self, env: TurnEnv, live: LiveAgent, request: ChatRequest, new_input: NewInput,
                 sink: TurnSink, client_tools: dict[str, dict[str, Any]], run: Run | None = None) -> None:
        self.env = env
        self.live = live
        self.request = request
        self.new_input = new_input
        self.sink = sink
        self.client_tools = client_tools
        self.run = run or Run(id=new_id("run"), agent_id=live.id)
        self.usage: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        self.steps = 0
        self.started = time.perf_counter()
        self.sent_at: float | None = None  # the first upstream request went out
        self.answered_at: float | None = None  # ...and its first chunk came back
        self.ttft_ms: float | None = None
        self.upstream_s = 0.0
        self.tool_s = 0.0
        self.unsaved: list[Message] = []
        self._accepted = False
        self._partial = ""
        self.rules = Rules(load(live.agent.tool_rules)) if live.agent.tool_rules else _NO_RULES
        self.plan: StepPlan = FREE  # what the agent's tool rules allow on the current step
        self._forced: StepPlan | None = None
        self.approved_ran: list[str] = []  # tools the client approved that ran before the first step
        self.head = TurnHead(env, live, request)  # the request head and tool schemas, built once per turn
        self.prompt = Prompt(env.memory, env.budget, live, new_input.instructions)

    # --- bookkeeping ------------------------------------------------------------------------
    def _add(self, role: str, content: str | None = None, **kw: Any) -> Message:
        message = self.env.memory.new_message(self.live, role, content, run_id=self.run.id, **kw)
        self.unsaved.append(message)
        return message

    def _accept(self) -> None:
        if not self._accepted:
            self._accepted = True
            self.sink.accepted()

    # --- the loop ---------------------------------------------------------------------------
    async def execute(self) -> None:
        logs.run_id.set(self.run.id)
        reason = "stop"
        try:
            await self._take_input()
            # An approved exit_loop tool ends the turn as soon as it has run.
            done = self.rules.active and self.rules.exits(self.approved_ran, self._called())
            while not done:
                self.steps += 1
                self.run.steps = self.steps
                if self.rules.active:
                    self.plan = self._forced or self.rules.plan(self.live.agent.tools, self._called())
                    self._forced = None
                content, calls, upstream_finish, said = await self._step()
                server_calls = [c for c in calls if not c.client]
                client_calls = [c for c in calls if c.client]
                metadata = said.stored()
                if calls:
                    if client_calls:
                        metadata["client_tool_calls"] = [c.id for c in client_calls]
                    if any(c.approval for c in client_calls):
                        metadata["approval_tool_calls"] = [c.id for c in client_calls if c.approval]
                    self._add("assistant", content or None, tool_calls=[c.wire() for c in calls],
                              metadata=metadata or None)
                    ran = await self._run_server_tools(server_calls)
                    if client_calls:
                        reason = "tool_calls"
                        break
                    if self.rules.active and self.rules.exits(ran, self._called()):
                        break  # an exit_loop tool ran: the turn ends here, reason "stop"
                    if self.steps >= self.env.max_steps:
                        reason = "length"
                        break
                    continue
                # An audio-only reply keeps its transcript as the text later turns see.
                self._add("assistant", content or said.transcript or None, metadata=metadata or None)
                # The model's own reason (length, content_filter...); only the loop itself says tool_calls.
                reason = upstream_finish if upstream_finish not in (None, "tool_calls", "function_call") else "stop"
                if self.rules.active and self.rules.before_exit(self.live.agent.tools, self._called()):
                    # required_before_exit: no final answer while a required tool has not run; force it.
                    if self.steps < self.env.max_steps:
                        self._forced = self.rules.before_exit(self.live.agent.tools, self._called())
                        continue
                    reason = "length"
                break
        except asyncio.CancelledError:
            await asyncio.shield(self._save_interrupted())
            raise
        except UpstreamError as exc:
            await self._fail(exc)
            return
        except Exception as exc:  # noqa: BLE001 - every turn ends: a bug becomes an error event, not a hang
            await self._crash(exc)
            return
        await self._complete(reason)

    async def _step(self) -> tuple[str, list[Call], str | None, ModelOutput]:
        try:
            return await self._call_upstream(await self._request_body())
        except UpstreamError as exc:
            if not exc.context_overflow or self._partial or self.env.budget is None:
                raise
            self.env.budget.learn_window(self.live, exc.message)
        # The model said the context is too long although we counted it in: evict harder, try once more.
        return await self._call_upstream(await self._request_body(harder=True))

    async def _call_upstream(self, body: list[bytes | memoryview]
                             ) -> tuple[str, list[Call], str | None, ModelOutput]:
        parts: list[str] = []
        calls: dict[int, Call] = {}
        finish: str | None = None
        said = ModelOutput()
        wants_logprobs = self.request.logprobs
        t0 = time.perf_counter()
        if self.sent_at is None:
            self.sent_at = t0
        first = True
        try:
            stream = self.env.upstream.stream_chat(body, self.request.upstream_headers or None)
            async for chunk in stream:
                if first:
                    first = False
                    now = time.perf_counter()
                    self.answered_at = self.answered_at or now
                    self.env.metrics.upstream_ttft.observe(now - t0)
                self._accept()
                usage = chunk_usage(chunk)
                if usage:
                    add_usage(self.usage, usage)
                    if isinstance(usage.get("prompt_tokens"), int):
                        self.prompt.observe(usage["prompt_tokens"])
                fingerprint = chunk.get("system_fingerprint")
                if isinstance(fingerprint, str):
                    self.sink.fingerprint(fingerprint)
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    text = delta.get("content")
                    extra = {} if delta.keys() <= PLAIN_DELTA_KEYS else {
                        k: delta[k] for k in RELAYED_DELTA_FIELDS if delta.get(k) is not None}
                    logprobs = choice.get("logprobs") if wants_logprobs else None
                    if extra or logprobs:
                        if text:
                            extra["content"] = text
                            parts.append(text)
                        said.add(extra, logprobs)
                        if self.ttft_ms is None:
                            self.ttft_ms = (time.perf_counter() - self.started) * 1000
                        self.sink.relay(extra, logprobs)
                    elif text:
                        if self.ttft_ms is None:
                            self.ttft_ms = (time.perf_counter() - self.started) * 1000
                        parts.append(text)
                        self.sink.content(text)
                    for tc in delta.get("tool_calls") or ():
                        self._tool_delta(calls, tc)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        except asyncio.CancelledError:
            self._partial = "".join(parts)
            raise
        except UpstreamError:
            self._partial = "".join(parts)
            raise
        finally:
            self.upstream_s += time.perf_counter() - t0
        return "".join(parts), [calls[i] for i in sorted(calls)], finish, said

    def _tool_delta(self, calls: dict[int, Call], tc: dict[str, Any]) -> None:
        index = tc.get("index", len(calls))
        fn = tc.get("function") or {}
        call = calls.get(index)
        if call is None:
            name = fn.get("name") or ""
            approval = self._needs_approval(name)
            call = Call(id=tc.get("id") or f"call_{new_id('x').replace('-', '')[-24:]}", name=name,
                         client=approval or name in self.client_tools, approval=approval)
            calls[index] = call
            if call.client:
                self.sink.tool_call_start(self._client_index(calls, index), call.id, name)
        elif fn.get("name") and not call.name:
            call.name = fn["name"]
        fragment = fn.get("arguments")
        if fragment:
            call.arguments.append(fragment)
            if call.client:
                self.sink.tool_call_arguments(self._client_index(calls, index), fragment)

    @staticmethod
    def _client_index(calls: dict[int, Call], index: int) -> int:
        # The client numbers only its own calls, 0..n-1, whatever server calls sit between them.
        return sum(1 for i, c in calls.items() if c.client and i < index)

    async def _run_server_tools(self, calls: list[Call], approved: bool = False) -> list[str]:
        """Run the calls in order (later calls may depend on earlier edits); the names of those that ran."""
        ran: list[str] = []
        if not calls:
            return ran
        if not approved:  # an approved call runs before the upstream accepted: no bytes may precede its answer
            self.sink.working()
        ctx = ToolContext(memory=self.env.memory, live=self.live, longterm=self.env.longterm, run_id=self.run.id)
        check = self.rules.active and not approved
        called = self._called() if check else []
        t0 = time.perf_counter()
        for call in calls:
            arguments = "".join(call.arguments)
            self.sink.server_tool_call(call.id, call.name, arguments)
            refusal = self.rules.refusal(self.plan, call.name, called) if check else None
            if refusal is not None:  # the model ignored what the rules offered: not run, and it reads why
                self.sink.tool_return(call.id, call.name, refusal, False)
                self._add("tool", refusal, tool_call_id=call.id, name=call.name,
                          metadata={"error": True, "refused": True})
                continue
            outcome = await self.env.registry.execute(ctx, call.name, arguments)
            self.sink.tool_return(call.id, call.name, outcome.text, outcome.ok)
            self._add("tool", outcome.text, tool_call_id=call.id, name=call.name,
                      metadata=None if outcome.ok else {"error": True})
            called.append(Called(call.name, outcome.text))
            ran.append(call.name)
        elapsed = time.perf_counter() - t0
        self.tool_s += elapsed
        self.env.metrics.tool_step.observe(elapsed)
        return ran

    async def _request_body(self, harder: bool = False) -> list[bytes | memoryview]:
        head, tools = self.head.step(self.steps <= 1, self.plan if self.rules.active else None)
        return await self.prompt.body(head, tools, harder)

    # --- endings ----------------------------------------------------------------------------
    def _timings(self) -> dict[str, float]:
        total = (time.perf_counter() - self.started) * 1000
        out = {"upstream_ms": round(self.upstream_s * 1000, 3), "tool_ms": round(self.tool_s * 1000, 3),
               "total_ms": round(total, 3)}
        if self.ttft_ms is not None:
            out["ttft_ms"] = round(self.ttft_ms, 3)
        return out

    async def _complete(self, reason: str) -> None:
        self.run.status = "completed"
        self.run.stop_reason = {"stop": "end_turn", "length": "max_steps", "tool_calls": "tool_calls"}.get(
            reason, reason)
        if reason == "length" and self.steps < self.env.max_steps:
            self.run.stop_reason = "max_tokens"
        t0 = time.perf_counter()
        try:
            await self._finish_run()
        except Exception as exc:  # noqa: BLE001 - not acknowledged: the client hears of it instead of the finish
            await self._crash(exc)  # tries to record the run as failed; if the store is down, the log says so
            return
        self.env.metrics.commit.observe(time.perf_counter() - t0)
        self.env.metrics.turns_completed.inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("turn finished: %s after %d step(s)", reason, self.steps, extra={"timings": self.run.timings})
        # Only now is the turn acknowledged: the finish chunk follows the commit, never precedes it.
        self.sink.finish(reason, dict(self.usage))
        if self.env.budget is not None and not self.live.agent.message_buffer_autoclear:
            try:
                self.env.budget.after_turn(self.live, self.env.memory.system_prompt(self.live), self.head.tools())
            except Exception:  # noqa: BLE001 - the turn is done and saved; only the next budget check is at stake
                log.exception("turn %s: measuring the context after the turn failed", self.run.id)

    async def _fail(self, exc: UpstreamError) -> None:
        partial = self._partial
        if partial:
            self._add("assistant", partial, metadata={"interrupted": True, "reason": "upstream_error"})
        self.run.status = "failed"
        self.run.stop_reason = "error"
        self.run.error = exc.message
        try:
            await self._finish_run()
        except Exception as store_exc:  # noqa: BLE001 - the upstream's error is still what the client hears
            log.error("turn %s: could not save the failed turn: %r", self.run.id, store_exc)
            self.env.memory.forget(self.live.id)
        status = exc.client_status
        code = exc.code or "upstream_error"
        self.env.metrics.upstream_errors.labels(str(exc.status), code).inc()
        self.env.metrics.turns_failed.inc()
        self.sink.error(APIError(status, f"upstream model error: {exc.message}", code=code,
                                 headers=exc.headers or None))

    async def _crash(self, exc: BaseException) -> None:
        """Something inside the turn raised: keep none of its messages, fail its run, and tell the client."""
        log.error("turn %s of %s failed", self.run.id, self.live.id, exc_info=exc)
        self.env.metrics.turns_failed.inc()
        self.unsaved = []
        # The live agent already holds this turn's messages: drop it so the next turn reloads the store's truth.
        self.env.memory.forget(self.live.id)
        if isinstance(exc, FenceLost):  # another process took the agent over: nothing of this turn was stored
            self.sink.error(APIError(503, f"{exc}; send the request again", code="turn_lock_lost"))
            return
        if isinstance(exc, StoreUnavailable):  # its commit could not reach the database: saving the failure neither
            self.sink.error(database_unavailable(exc))
            return
        self.run.status, self.run.stop_reason = "failed", "error"
        self.run.error = f"internal error ({type(exc).__name__})"
        try:
            await self._finish_run()
        except Exception as store_exc:  # noqa: BLE001 - the client must hear of the first failure regardless
            log.error("turn %s: could not save its failed run: %r", self.run.id, store_exc)
        self.sink.error(APIError(500, f"the agent's turn failed with an internal error and was not saved "
                                 f"(run {self.run.id}); send the request again", code="internal_error"))

    async def _save_interrupted(self) -> None:
        partial = self._partial
        if partial:
            self._add("assistant", partial, metadata={"interrupted": True, "reason": "client_disconnected"})
        self.run.status = "cancelled"
        self.run.stop_reason = "cancelled"
        self.env.metrics.turns_cancelled.inc()
        try:
            await self._finish_run()
        except Exception:  # noqa: BLE001 - a failed save must not hide the cancellation
            log.exception("could not save interrupted turn %s", self.run.id)
            self.env.memory.forget(self.live.id)

    async def _finish_run(self) -> None:
        """Write the whole turn, its messages and its run, in one commit shared with turns ending alongside."""
        self.run.usage = dict(self.usage)
        self.run.timings = self._timings()
        self.run.completed_at = utcnow()
        evicted: list[str] = []
        if self.live.agent.message_buffer_autoclear:
            # Voice-style agents start every turn fresh; the turn stays in recall.
            evicted = [m.id for m in self.env.memory.evict(self.live, {m.id for m in self.live.messages})]
        batch, self.unsaved = self.unsaved, []
        on_messages = self.env.on_messages
        await self.env.memory.commit_turn(
            self.live.id, Changes(messages=batch, runs=[self.run], evict_message_ids=evicted, insert_only=True,
                                  fence=(self.live.id, self.live.fence) if self.live.fence else None),
            after=(lambda: on_messages(batch)) if on_messages and batch else None)
