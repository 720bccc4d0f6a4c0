"""The tools layer's extension points, one line each: a tool's body, and the registry a turn runs tools from.

A new kind of tool (built-in, custom in the sandbox, MCP) is a `ServerTool` whose `run` is a
`ToolFunction`; the one `ToolRegistry` of the server holds them all and satisfies `Tools`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tools.registry import ServerTool, ToolContext, ToolOutcome


class ToolFunction(Protocol):
    """The body of a server tool: the model's arguments in, the text the model reads out."""

    async def __call__(self, ctx: ToolContext, args: dict[str, Any], /) -> str:
        """Run once; raise ToolError for a failure the model should read and act on."""


class Tools(Protocol):
    """The server's tools by name: what a turn offers the model and runs for it (tools.registry.ToolRegistry)."""

    def get(self, name: str) -> ServerTool | None:
        """The tool of that name, or None."""

    def by_id(self, tool_id: str) -> ServerTool | None:
        """The tool with that id, or None."""

    def tools(self) -> list[ServerTool]:
        """Every tool."""

    def names(self) -> list[str]:
        """Every tool's name."""

    def __contains__(self, name: object) -> bool:
        """Whether a tool of that name exists."""

    def add(self, tool: ServerTool) -> None:
        """Add or replace (by name) a tool."""

    def remove(self, name: str) -> None:
        """Drop the tool of that name, if any."""

    def schemas(self, names: tuple[str, ...]) -> list[dict[str, Any]]:
        """The OpenAI `tools` entries for these names (unknown names skipped); shared, do not mutate."""

    async def execute(self, ctx: ToolContext, name: str, arguments: str | dict[str, Any] | None) -> ToolOutcome:
        """Run one call; every failure, a bug in the tool included, is an outcome the model reads."""
