"""Core-memory editing tools: the agent rewrites its own memory blocks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memory.models import LABEL_PATTERN, Block, new_id
from tools.registry import ServerTool, ToolContext, ToolError


def _writable(ctx: ToolContext, label: Any) -> Block:
    if not isinstance(label, str) or not label:
        raise ToolError("`label` is required: the label of the memory block to edit")
    block = ctx.live.block(label)
    if block is None:
        labels = ", ".join(b.label for b in ctx.live.blocks) or "none"
        raise ToolError(f"no memory block with label `{label}`. Available labels: {labels}.")
    if block.read_only:
        raise ToolError(f"memory block `{label}` is read-only; you cannot edit it.")
    return block


def _text(args: dict[str, Any], name: str, *, allow_empty: bool = True) -> str:
    value = args.get(name)
    if value is None:
        if allow_empty:
            return ""
        raise ToolError(f"`{name}` is required")
    if not isinstance(value, str):
        raise ToolError(f"`{name}` must be a string")
    return value


async def _save(ctx: ToolContext, block: Block, value: str) -> str:
    if len(value) > block.limit:
        raise ToolError(
            f"edit rejected: block `{block.label}` would hold {len(value)} characters, over its limit of "
            f"{block.limit}. Shorten the text, or condense the block with memory_rethink first."
        )
    # Committed before the model is told: a result saying "updated" must survive a crash a moment later.
    await ctx.memory.save_block(replace(block, value=value))
    return (f"Memory block `{block.label}` updated ({len(value)}/{block.limit} characters). "
            "Its new content is in your core memory.")


async def memory_insert(ctx: ToolContext, args: dict[str, Any]) -> str:
    block = _writable(ctx, args.get("label"))
    new_str = _text(args, "new_str", allow_empty=False)
    line = args.get("insert_line", -1)
    if not isinstance(line, int) or isinstance(line, bool):
        raise ToolError("`insert_line` must be an integer (0 = beginning, -1 = end)")
    lines = block.value.split("\n") if block.value else []
    if line == -1 or line >= len(lines):
        lines.extend(new_str.split("\n"))
    elif line < -1:
        raise ToolError(f"`insert_line` {line} is invalid; use 0..{len(lines)} or -1 for the end")
    else:
        lines[line:line] = new_str.split("\n")
    return await _save(ctx, block, "\n".join(lines))


async def memory_replace(ctx: ToolContext, args: dict[str, Any]) -> str:
    block = _writable(ctx, args.get("label"))
    old_str = _text(args, "old_str", allow_empty=False)
    new_str = _text(args, "new_str")
    if old_str == "":
        raise ToolError("`old_str` must not be empty; use memory_insert to add text")
    count = block.value.count(old_str)
    if count == 0:
        raise ToolError(f"`old_str` was not found verbatim in block `{block.label}`; nothing was replaced. "
                        "Copy the exact text, including whitespace.")
    if count > 1:
        found_on = [i + 1 for i, text in enumerate(block.value.split("\n")) if old_str in text]
        raise ToolError(f"`old_str` appears {count} times in block `{block.label}` (lines {found_on}); "
                        "include more surrounding text so it is unique.")
    return await _save(ctx, block, block.value.replace(old_str, new_str, 1))


async def memory_rethink(ctx: ToolContext, args: dict[str, Any]) -> str:
    label = args.get("label")
    new_memory = _text(args, "new_memory")
    if isinstance(label, str) and ctx.live.block(label) is None:
        if not LABEL_PATTERN.match(label):
            raise ToolError("a new block label must be letters, digits, '_' or '-', starting with a letter")
        # Rethinking a label that does not exist yet creates the block for this agent.
        block = Block(id=new_id("block"), label=label, value=new_memory)
        if len(new_memory) > block.limit:
            raise ToolError(f"edit rejected: {len(new_memory)} characters is over the limit of {block.limit}")
        await ctx.memory.create_block(block)
        await ctx.memory.attach_block(ctx.live, block.id)
        return f"Created memory block `{label}` with {len(new_memory)} characters."
    block = _writable(ctx, label)
    return await _save(ctx, block, new_memory)


async def core_memory_append(ctx: ToolContext, args: dict[str, Any]) -> str:
    block = _writable(ctx, args.get("label"))
    content = _text(args, "content", allow_empty=False)
    value = f"{block.value}\n{content}" if block.value else content
    return await _save(ctx, block, value)


async def core_memory_replace(ctx: ToolContext, args: dict[str, Any]) -> str:
    return await memory_replace(ctx, {"label": args.get("label"), "old_str": args.get("old_content"),
                                      "new_str": args.get("new_content", "")})


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_LABEL = {"type": "string", "description": "Label of the memory block to edit, e.g. `human` or `persona`."}

MEMORY_TOOLS: tuple[ServerTool, ...] = (
    ServerTool(
        "memory_insert",
        "Insert text into one of your memory blocks at a line (0 = the top, -1 = the end).",
        _schema({"label": _LABEL,
                 "new_str": {"type": "string", "description": "The text to insert."},
                 "insert_line": {"type": "integer", "description": "Line to insert before; -1 appends.",
                                 "default": -1}},
                ["label", "new_str"]),
        memory_insert,
    ),
    ServerTool(
        "memory_replace",
        "Replace an exact, unique piece of text in one of your memory blocks. An empty new_str deletes it.",
        _schema({"label": _LABEL,
                 "old_str": {"type": "string", "description": "Exact text to replace; must occur once."},
                 "new_str": {"type": "string", "description": "The replacement text."}},
                ["label", "old_str", "new_str"]),
        memory_replace,
    ),
    ServerTool(
        "memory_rethink",
        "Rewrite a whole memory block, to reorganise or condense it. A new label creates a block.",
        _schema({"label": _LABEL,
                 "new_memory": {"type": "string", "description": "The block's complete new content."}},
                ["label", "new_memory"]),
        memory_rethink,
    ),
    ServerTool(
        "core_memory_append",
        "Append a line to a memory block (legacy; prefer memory_insert).",
        _schema({"label": _LABEL, "content": {"type": "string", "description": "Text to append."}},
                ["label", "content"]),
        core_memory_append,
    ),
    ServerTool(
        "core_memory_replace",
        "Replace text in a memory block (legacy; prefer memory_replace).",
        _schema({"label": _LABEL,
                 "old_content": {"type": "string", "description": "Exact text to replace."},
                 "new_content": {"type": "string", "description": "The replacement text."}},
                ["label", "old_content", "new_content"]),
        core_memory_replace,
    ),
)
