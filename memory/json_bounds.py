"""Bounds on free-form JSON values: what request validation refuses and what row decoding distrusts."""

from __future__ import annotations

from typing import Any


def json_fault(value: Any, max_depth: int, *, nul: bool = True) -> str | None:
    """Why `value` is unfit to store (nests over `max_depth` levels, or a NUL in a string when `nul`), or None.

    Iterative, so a hostile depth cannot hit Python's recursion limit.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if nul and "\x00" in node:
                return "contains NUL characters"
            continue
        if isinstance(node, dict):
            children: list[Any] = [*node.keys(), *node.values()]
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return f"nests deeper than {max_depth} levels"
        wanted = (str, dict, list) if nul else (dict, list)
        stack.extend((child, depth + 1) for child in children if isinstance(child, wanted))
    return None
