"""The turn loop's side of new input, tool rules and approvals: answered and waiting calls, what ran, denials."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memory.agents import LiveAgent
from memory.context import content_text, media_parts
from memory.models import Message
from proxy.protocols import TurnSink
from proxy.chat.new_input import NewInput, already_held, approval_decision, pending_approvals, pending_client_calls
from tools.rules import Called, Rules, StepPlan


@dataclass
class Call:
    """One tool call of the model, gathered from the stream."""

    id: str
    name: str
    arguments: list[str] = field(default_factory=list)
    client: bool = False  # shown to the client as a tool call: a client tool's, or a server tool's awaiting approval
    approval: bool = False

    def wire(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": "".join(self.arguments)}}


class RulesMixin:
    """New input, tool-rule and approval steps of `Turn` (kept apart so the loop itself stays short)."""

    live: LiveAgent
    new_input: NewInput
    approved_ran: list[str]
    rules: Rules
    plan: StepPlan
    sink: TurnSink

    def _add(self, role: str, content: str | None = None, **kw: Any) -> Message:
        raise NotImplementedError

    async def _run_server_tools(self, calls: list[Call], approved: bool = False) -> list[str]:
        raise NotImplementedError

    async def _take_input(self) -> None:
        """Add the request's new input: results for calls that waited (approvals run or denied), then user text."""
        pending = pending_client_calls(self.live)
        approvals = pending_approvals(self.live) if pending else {}
        answered: set[str] = set()
        for result in self.new_input.tool_results:
            call_id = result.get("tool_call_id")
            if call_id is None and result.get("role") == "function":
                # Legacy function results carry only the function's name.
                call_id = next((i for i, n in pending.items() if n == result.get("name") and i not in answered), None)
            if call_id in pending and call_id not in answered:
                answered.add(call_id)
                content = result.get("content")
                if call_id in approvals:
                    await self._approval(approvals[call_id], approval_decision(content) or (False, None))
                    continue
                text = content if isinstance(content, str) else content_text(content)
                parts = media_parts(content)
                self._add("tool", text, tool_call_id=call_id, name=pending[call_id],
                          metadata={"parts": parts} if parts else None)
        for call_id, name in pending.items():
            if call_id in approvals and call_id not in answered:
                # A new message instead of an approval: the call is denied, and the model is told so.
                await self._approval(approvals[call_id], (False, "the user sent a new message instead of approving"))
            elif call_id not in answered:
                # A dangling tool call would make the upstream reject the history: close it explicitly.
                self._add("tool", "Error: the client did not return a result for this tool call; it was abandoned.",
                          tool_call_id=call_id, name=name, metadata={"abandoned": True})
        texts = [content_text(m.get("content")) for m in self.new_input.user]
        skip = 0 if answered or pending else already_held(self.live, texts)
        for message, text in list(zip(self.new_input.user, texts))[skip:]:
            parts = media_parts(message.get("content"))
            self._add("user", text, name=message.get("name") if isinstance(message.get("name"), str) else None,
                      metadata={"parts": parts} if parts else None)

    def _needs_approval(self, name: str) -> bool:
        return (self.rules.needs_approval(name) and name in self.live.agent.tools
                and (self.plan.allowed is None or name in self.plan.allowed))

    def _called(self) -> list[Called]:
        """The server tool calls that ran since the user last spoke (across an approval pause), oldest first."""
        out: list[Called] = []
        for message in reversed(self.live.messages):
            if message.role == "user":
                break
            if message.role == "tool" and message.name and not (
                    message.metadata.get("refused") or message.metadata.get("denied")
                    or message.metadata.get("abandoned")):
                out.append(Called(message.name, message.content or ""))
        out.reverse()
        return out

    async def _approval(self, wire: dict[str, Any], decision: tuple[bool, str | None]) -> None:
        """The client's answer to a call that waited for approval: run it, or tell the model it was denied."""
        approve, reason = decision
        fn = wire.get("function") or {}
        call = Call(wire["id"], fn.get("name", ""), [fn.get("arguments") or ""])
        if approve:
            self.approved_ran += await self._run_server_tools([call], approved=True)
            return
        text = f"Error: the user denied this call to `{call.name}`" + (f": {reason}" if reason else "") + \
            ". It was not run."
        self.sink.server_tool_call(call.id, call.name, "".join(call.arguments))
        self.sink.tool_return(call.id, call.name, text, False)
        self._add("tool", text, tool_call_id=call.id, name=call.name, metadata={"error": True, "denied": True})
