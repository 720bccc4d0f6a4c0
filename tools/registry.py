"""The server-side tool registry: each tool's OpenAI schema and the coroutine that runs it."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import orjson

from memory.agents import AgentMemory, LiveAgent
from memory.protocols import LongTermMemory
from tools.protocols import ToolFunction

# Tools every agent gets when created with include_base_tools (the default).
BASE_TOOLS: tuple[str, ...] = ("memory_insert", "memory_replace", "memory_rethink", "conversation_search")
# Tools added when the agent asks for them (or, for archival, has an embedding model).
ARCHIVAL_TOOLS: tuple[str, ...] = ("archival_memory_insert", "archival_memory_search")


log = logging.getLogger("memproxy")
_TOOL_NAMESPACE = uuid.UUID("6c1f6a52-3f0e-4d51-9d0a-6d656d70726f")


def builtin_tool_id(name: str) -> str:
    """A stable id per built-in tool name, the same on every agent and restart."""
    return f"tool-{uuid.uuid5(_TOOL_NAMESPACE, name)}"


class ToolError(Exception):
    """A failure the model should read and act on; never raised to the client."""


@dataclass
class ToolContext:
    memory: AgentMemory
    live: LiveAgent
    longterm: LongTermMemory | None = None  # None until long-term memory is open
    timezone: str | None = None  # None: the agent's own (Letta's `timezone`)
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.timezone is None:
            self.timezone = self.live.agent.timezone


@dataclass(frozen=True)
class ServerTool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: ToolFunction = field(compare=False)
    id: str = ""  # built-in tools get a stable id from their name
    kind: str = "builtin"  # builtin | custom (later: mcp)
    record: Any = field(default=None, compare=False)  # the stored memory.models.Tool of a custom tool

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", builtin_tool_id(self.name))

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
        self._validators: dict[str, jsonschema.Draft202012Validator] = {}
        for tool in tools or []:
            self.add(tool)

    def add(self, tool: ServerTool) -> None:
        """Add or replace (by name) a tool."""
        self._tools[tool.name] = tool
        self._schemas.clear()
        self._validators.pop(tool.name, None)

    def remove(self, name: str) -> None:
        self._tools.pop(name, None)
        self._schemas.clear()
        self._validators.pop(name, None)

    def get(self, name: str) -> ServerTool | None:
        return self._tools.get(name)

    def by_id(self, tool_id: str) -> ServerTool | None:
        return next((tool for tool in self._tools.values() if tool.id == tool_id), None)

    def tools(self) -> list[ServerTool]:
        return list(self._tools.values())

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
        """Run one call; every failure, a bug in the tool included, is an outcome the model reads."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolOutcome(f"Error: no tool named {name!r} is available.", False)
        try:
            args = self._checked(tool, _parse_arguments(arguments))
            return ToolOutcome(await tool.run(ctx, args), True)
        except ToolError as exc:
            return ToolOutcome(f"Error: {exc}", False)
        except Exception as exc:  # noqa: BLE001 - a bug in one tool must not fail the turn
            log.exception("server tool %s raised", name)
            return ToolOutcome(f"Error: the tool `{name}` failed: {type(exc).__name__}: {exc}", False)

    def _checked(self, tool: ServerTool, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments the schema declares, validated; unknown ones (e.g. request_heartbeat) are dropped."""
        properties = tool.parameters.get("properties")
        if isinstance(properties, dict):
            args = {key: value for key, value in args.items() if key in properties}
        validator = self._validators.get(tool.name)
        if validator is None:
            validator = jsonschema.Draft202012Validator(tool.parameters)
            self._validators[tool.name] = validator
        error = jsonschema.exceptions.best_match(validator.iter_errors(args))
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path)
            raise ToolError(f"bad arguments for `{tool.name}`: {where + ': ' if where else ''}{error.message}. "
                            f"Call it again with arguments matching its schema.")
        return args


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
    """Every built-in server tool; the server adds its custom tools to this once, at start-up."""
    from tools.memory_tools import MEMORY_TOOLS

    registry = ToolRegistry(list(MEMORY_TOOLS))
    from tools.search_tools import SEARCH_TOOLS

    for tool in SEARCH_TOOLS:
        registry.add(tool)
    return registry
