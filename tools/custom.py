"""Custom tools: a JSON schema read from Python source without running it, and the ServerTool that runs it sandboxed."""

from __future__ import annotations

import ast
import logging
import re
from typing import Any

import jsonschema

from memory.models import Tool
from tools.registry import ServerTool, ToolContext, ToolError, ToolRegistry
from tools.sandbox import Sandbox

log = logging.getLogger("memproxy")

_SIMPLE = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
           "list": "array", "List": "array", "dict": "object", "Dict": "object", "Any": None}
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


class SourceError(ValueError):
    """The source code (or the schema given with it) cannot be a tool; the message says why."""


def schema_from_source(source: str) -> dict[str, Any]:
    """The OpenAI function object {name, description, parameters} of the one function in `source`."""
    fn = _the_function(source)
    summary, arg_docs = _docstring(ast.get_docstring(fn) or "")
    args = fn.args
    if args.vararg or args.kwarg or args.posonlyargs:
        raise SourceError(f"`{fn.name}` must take named parameters only (no *args, **kwargs or `/`)")
    positional = args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg, default in params:
        if arg.annotation is None:
            raise SourceError(f"parameter `{arg.arg}` of `{fn.name}` needs a type hint")
        prop, optional = _annotation(arg.annotation, arg.arg)
        if arg.arg in arg_docs:
            prop["description"] = arg_docs[arg.arg]
        properties[arg.arg] = prop
        if default is None and not optional:
            required.append(arg.arg)
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"name": fn.name, "description": summary, "parameters": parameters}


def checked_schema(source: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """The schema a tool is offered with: `given` if any (checked against the source), else the derived one."""
    derived = schema_from_source(source)
    if given is None:
        return derived
    name = given.get("name", derived["name"])
    if name != derived["name"]:
        raise SourceError(f"json_schema names {name!r} but the source defines `{derived['name']}`")
    parameters = given.get("parameters", derived["parameters"])
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise SourceError("json_schema.parameters must be a JSON schema of type object")
    try:
        jsonschema.Draft202012Validator.check_schema(parameters)
    except jsonschema.SchemaError as exc:
        raise SourceError(f"json_schema.parameters is not a valid JSON schema: {exc.message}") from None
    description = given.get("description", derived["description"])
    return {"name": name, "description": str(description or ""), "parameters": parameters}


def load_custom_tool(registry: ToolRegistry, record: Tool, sandbox: Sandbox) -> bool:
    """Put a stored custom tool in the registry; False (said in the log) when its source no longer loads."""
    try:
        registry.add(custom_tool(record, sandbox))
    except (SourceError, KeyError) as exc:
        log.warning("custom tool %s (%s) could not be loaded: %s", record.name, record.id, exc)
        return False
    return True


def custom_tool(record: Tool, sandbox: Sandbox) -> ServerTool:
    """The registry entry of a stored custom tool: it runs in `sandbox` with the calling agent's variables."""
    name = record.name
    schema = record.json_schema

    async def run(ctx: ToolContext, args: dict[str, Any]) -> str:
        env = dict(ctx.live.agent.tool_env)
        result = await sandbox.run(record.source_code, name, args, env)
        if not result.ok:
            if result.traceback is not None:
                # The tool's own traceback, with the agent's secrets taken out: logs are not a place for keys.
                log.warning("custom tool %s raised:\n%s", name, redact(result.traceback, env).rstrip())
                raise ToolError(f"the tool `{name}` failed: {redact(result.text, env)}")
            log.warning("custom tool %s %s", name, result.text)
            raise ToolError(f"the tool `{name}` {result.text}")
        limit = record.return_char_limit
        if len(result.text) > limit:
            return result.text[:limit] + f"\n[output truncated: {len(result.text) - limit} more characters]"
        return result.text

    return ServerTool(name, schema.get("description") or record.description, schema["parameters"], run,
                      id=record.id, kind="custom", record=record)


def redact(text: str, env: dict[str, str]) -> str:
    for value in env.values():
        if len(value) >= 4:
            text = text.replace(value, "[redacted]")
    return text


def _the_function(source: str) -> ast.FunctionDef:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise SourceError(f"source_code does not parse: {exc.msg} (line {exc.lineno})") from None
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    if any(isinstance(node, ast.AsyncFunctionDef) for node in tree.body):
        raise SourceError("async functions are not supported; write a plain `def`")
    if len(functions) != 1:
        raise SourceError(f"source_code must define exactly one top-level function; it defines {len(functions)}")
    fn = functions[0]
    if len(fn.name) > 64:
        raise SourceError("the function name must be at most 64 characters")
    return fn


def _annotation(node: ast.expr, arg: str) -> tuple[dict[str, Any], bool]:
    """(JSON schema, optional?) for a type hint; Optional[X] and X | None are optional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body  # a string annotation: "list[str]"
        except SyntaxError:
            raise SourceError(f"the type hint of `{arg}` does not parse") from None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = [p for p in (node.left, node.right) if not _is_none(p)]
        if len(parts) == 1:
            return _annotation(parts[0], arg)[0], True
        raise SourceError(f"the type hint of `{arg}` is a union; use one type (or X | None)")
    if isinstance(node, ast.Subscript):
        outer = _name(node.value)
        inner = node.slice
        if outer == "Optional":
            return _annotation(inner, arg)[0], True
        if outer == "Literal":
            values = inner.elts if isinstance(inner, ast.Tuple) else [inner]
            if not all(isinstance(v, ast.Constant) for v in values):
                raise SourceError(f"the Literal hint of `{arg}` must list constants")
            return {"enum": [v.value for v in values]}, False  # type: ignore[attr-defined]
        if outer in ("list", "List"):
            return {"type": "array", "items": _annotation(inner, arg)[0]}, False
        if outer in ("dict", "Dict"):
            return {"type": "object"}, False
        raise SourceError(f"the type hint of `{arg}` ({outer}[...]) is not supported")
    name = _name(node)
    if name in _SIMPLE:
        kind = _SIMPLE[name]
        return ({"type": kind} if kind else {}), False
    raise SourceError(f"the type hint of `{arg}` is not supported; use str, int, float, bool, list or dict")


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr  # typing.List -> List
    return ""


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {parameter: description}) from a Google-style docstring (`Args:` section)."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section = ""
    current = ""
    param_indent: int | None = None  # parameter lines sit at this indent; deeper lines continue one
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.endswith(":") and stripped[:-1].lower() in _SECTIONS:
            section, current, param_indent = stripped[:-1].lower(), "", None
            continue
        if not section:
            summary.append(stripped)
            continue
        if section not in ("args", "arguments", "parameters") or not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if param_indent is None:
            param_indent = indent
        match = _ARG_LINE.match(line)
        if indent <= param_indent and match:
            current = match.group(1).lstrip("*")
            args[current] = match.group(3).strip()
        elif current:
            args[current] = f"{args[current]} {stripped}".strip()
    first_paragraph = "\n".join(summary).strip().split("\n\n")[0]
    return " ".join(first_paragraph.split()), args


_SECTIONS = ("args", "arguments", "parameters", "returns", "raises", "yields", "example", "examples")
