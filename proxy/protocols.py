"""The proxy layer's extension points, one line each: the upstream, turn locks, where a turn's events go.

The memory layer's (store, long-term memory, summarizer, spawn) are in memory/protocols.py, the tools' in
tools/protocols.py. mypy checks every implementation where it is passed as one of these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from proxy.coordination import Bumped, Lease, OnDrop, Release
    from proxy.errors import APIError


class ChatUpstream(Protocol):
    """An OpenAI-compatible chat completions endpoint (proxy.upstream.Upstream; the simulator in tests)."""

    base_url: str  # ends in /v1

    def stream_chat(self, body: dict[str, Any] | bytes | Sequence[bytes | memoryview],
                    headers: dict[str, str] | None = None) -> AsyncIterator[dict[str, Any]]:
        """Each parsed chunk of a streamed chat completion; UpstreamError on failure."""

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed chat completion."""


class AgentLocks(Protocol):
    """One turn at a time per agent, and (across processes) what every process must know of the agent."""

    shared: bool  # several processes: versions, fencing and idempotency records live in Redis

    async def lease(self, agent_id: str, timeout: float, *, idem_key: str | None = None,
                    run: dict[str, Any] | None = None, record: dict[str, Any] | None = None,
                    record_ttl: float = 0.0) -> Lease:
        """Take the agent's turn lock (LockTimeout after `timeout`), reading its version and the request's record."""

    async def acquire(self, agent_id: str, timeout: float) -> Release:
        """Take the agent's turn lock without a lease; call the result to free it."""

    async def changed(self, agent_ids: list[str]) -> Bumped:
        """Bump the agents' versions everywhere (their state changed outside a turn)."""

    async def running(self, run_id: str) -> dict[str, Any] | None:
        """A run in flight in any process, as its JSON, or None."""

    async def running_runs(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Runs in flight in every process."""

    async def tools_version(self) -> int:
        """The fleet's custom tools / MCP servers version (proxy/tool_sync.py); 0 with one process."""

    async def version(self, agent_id: str) -> int | None:
        """The agent's version now (None: unknown, or one process)."""

    async def record(self, agent_id: str, idem_key: str, value: dict[str, Any], ttl: float) -> None:
        """Leave an idempotency record for a request to the agent."""

    def on_drop(self, callback: OnDrop) -> None:
        """Call `callback` with every announced version change (None: announcements were missed)."""

    async def close(self) -> None:
        """Stop listening and release connections."""


class TurnSink(Protocol):
    """Where a turn sends what the client sees, in order (one per surface: OpenAI SSE or JSON, Letta's)."""

    def accepted(self) -> None:
        """The upstream accepted the request: a stream can start with a 200."""

    def content(self, text: str) -> None:
        """A fragment of the answer's text."""

    def relay(self, delta: dict[str, Any], logprobs: Any) -> None:
        """Delta fields passed through as the upstream sent them (refusal, audio...), with their logprobs."""

    def fingerprint(self, value: str) -> None:
        """The upstream's system_fingerprint."""

    def tool_call_start(self, index: int, call_id: str, name: str) -> None:
        """A client tool call begins (the client numbers its calls 0..n-1)."""

    def tool_call_arguments(self, index: int, fragment: str) -> None:
        """A fragment of a client tool call's arguments."""

    def working(self) -> None:
        """Server tools are running: a keep-alive, nothing the client reads."""

    def server_tool_call(self, call_id: str, name: str, arguments: str) -> None:
        """A server tool call (Letta's messages API shows it; DESIGN rule 6 hides it on OpenAI's)."""

    def tool_return(self, call_id: str, name: str, text: str, ok: bool) -> None:
        """A server tool's result."""

    def finish(self, reason: str, usage: dict[str, Any]) -> None:
        """The turn is committed: its finish reason and usage."""

    def error(self, error: APIError) -> None:
        """The turn failed; nothing more follows."""

