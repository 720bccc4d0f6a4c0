"""Compile an agent's system prompt and memory blocks into the one system message sent upstream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from memory.models import DEFAULT_DESCRIPTIONS, Block


@dataclass(frozen=True)
class MemoryMetadata:
    """What `<memory_metadata>` shows. Part of the cache key, so only stable values belong here."""

    today: date
    recall_count: int = 0
    archival_count: int = 0
    archival_tags: tuple[str, ...] = ()


def describe(block: Block) -> str:
    return block.description or DEFAULT_DESCRIPTIONS.get(block.label, "")


def compile_block(block: Block) -> str:
    meta = []
    if block.read_only:
        meta.append("- read_only=true")
    meta.append(f"- chars_current={len(block.value)}")
    meta.append(f"- chars_limit={block.limit}")
    return (
        f"<{block.label}>\n"
        f"<description>\n{describe(block)}\n</description>\n"
        f"<metadata>\n" + "\n".join(meta) + "\n</metadata>\n"
        f"<value>\n{block.value}\n</value>\n"
        f"</{block.label}>"
    )


def compile_memory_metadata(meta: MemoryMetadata) -> str:
    lines = [
        f"- The current system date is: {meta.today.isoformat()}",
        f"- {meta.recall_count} previous messages between you and the user are stored in recall memory "
        "(use tools to access them)",
        f"- {meta.archival_count} total memories you created are stored in archival memory "
        "(use tools to access them)",
    ]
    if meta.archival_tags:
        lines.append("- Available archival memory tags: " + ", ".join(meta.archival_tags))
    return "<memory_metadata>\n" + "\n".join(lines) + "\n</memory_metadata>"


def compile_system_prompt(system: str, blocks: list[Block], meta: MemoryMetadata) -> str:
    """The agent's own prompt, then `<memory_blocks>`, then `<memory_metadata>`."""
    parts = [system.rstrip()] if system.strip() else []
    body = "\n\n".join(compile_block(b) for b in blocks)
    parts.append(
        "<memory_blocks>\nThe following memory blocks are currently engaged in your core memory unit:\n\n"
        + body + ("\n\n" if body else "") + "</memory_blocks>"
    )
    parts.append(compile_memory_metadata(meta))
    return "\n\n".join(parts)
