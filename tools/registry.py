"""The server-side tool registry: each tool's OpenAI schema and the coroutine that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson

from memory.agents import AgentMemory, LiveAgent
from memory.longterm.api import LongTermMemory

# Tools every agent gets when created with include_base_tools (the default).
BASE_TOOLS: tuple[str, ...] = ("memory_insert", "memory_replace", "memory_rethink", "conversation_search")
# Tools added when the agent asks for them (or, for archival, has an embedding model).
ARCHIVAL_TOOLS: tuple[str, ...] = ("archival_memory_insert", "archival_memory_search")


class ToolError(Exception):
    """A failure the model should read and act on; never raised to the client."""


@dataclass
class ToolContext:
    memory: AgentMemory
    live: LiveAgent
    longterm: LongTermMemory | None = None  # None until long-term memory is open
    timezone: str = "UTC"
    run_id: str | None = None


ToolFunction = Callable[[ToolContext, dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True)
class ServerTool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: ToolFunction = field(compare=False)

    def openai_schema(self) -> dict[str, Any]:
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolOutcome:
    text: str
    ok: bool


class ToolRegistry:
    """Name -> ServerTool, with the OpenAI `tools` list for a set of names cached."""

    def __init__(self, tools: list[ServerTool] | None = None) -> None:
        self._tools: dict[str, ServerTool] = {}
        self._schemas: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for tool in tools or []:
            self.add(tool)

    def add(self, tool: ServerTool) -> None:
        self._tools[tool.name] = tool
        self._schemas.clear()

    def get(self, name: str) -> ServerTool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self, names: tuple[str, ...]) -> list[dict[str, Any]]:
        """The OpenAI `tools` entries for these names (unknown names skipped); the list is shared, do not mutate."""
        cached = self._schemas.get(names)
        if cached is None:
            cached = [self._tools[n].openai_schema() for n in names if n in self._tools]
            self._schemas[names] = cached
        return cached

    async def execute(self, ctx: ToolContext, name: str, arguments: str | dict[str, Any] | None) -> ToolOutcome:
        tool = self._tools.get(name)
        if tool is None:
            return ToolOutcome(f"Error: no tool named {name!r} is available.", False)
        try:
            args = _parse_arguments(arguments)
            return ToolOutcome(await tool.run(ctx, args), True)
        except ToolError as exc:
            return ToolOutcome(f"Error: {exc}", False)
        except TypeError as exc:
            return ToolOutcome(f"Error: bad arguments for {name}: {exc}", False)


def _parse_arguments(arguments: str | dict[str, Any] | None) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise ToolError("the tool arguments were not valid JSON; send a JSON object") from None
    if not isinstance(parsed, dict):
        raise ToolError("the tool arguments must be a JSON object")
    return parsed


def default_registry() -> ToolRegistry:
    """Every built-in server tool."""
    from tools.memory_tools import MEMORY_TOOLS

    registry = ToolRegistry(list(MEMORY_TOOLS))
    try:
        from tools.search_tools import SEARCH_TOOLS
    except ImportError:
        SEARCH_TOOLS = []
    for tool in SEARCH_TOOLS:
        registry.add(tool)
    return registry


_DEFAULT: ToolRegistry | None = None


def tool_schema(name: str) -> dict[str, Any] | None:
    """The OpenAI schema of a built-in tool, for the management API's tool listings."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = default_registry()
    tool = _DEFAULT.get(name)
    return tool.openai_schema()["function"] if tool else None
