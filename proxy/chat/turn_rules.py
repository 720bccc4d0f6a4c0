"""The turn loop's side of tool rules and approvals: which calls wait for the client, what ran, denials."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memory.agents import LiveAgent
from memory.models import Message
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
    """Tool-rule and approval steps of `Turn` (kept apart so the loop itself stays short)."""

    live: LiveAgent
    rules: Rules
    plan: StepPlan
    sink: Any

    def _add(self, role: str, content: str | None = None, **kw: Any) -> Message:
        raise NotImplementedError

    async def _run_server_tools(self, calls: list[Call], approved: bool = False) -> list[str]:
        raise NotImplementedError

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
            await self._run_server_tools([call], approved=True)
            return
        text = f"Error: the user denied this call to `{call.name}`" + (f": {reason}" if reason else "") + \
            ". It was not run."
        self.sink.server_tool_call(call.id, call.name, "".join(call.arguments))
        self.sink.tool_return(call.id, call.name, text, False)
        self._add("tool", text, tool_call_id=call.id, name=call.name, metadata={"error": True, "denied": True})
