"""memory.paging: keyset page walking and the merge of two sorted id scans, against plain set arithmetic."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from memory.paging import id_pages, sorted_differences


def scan(ids: set[str], limit: int, fetched: list[str | None] | None = None) -> AsyncIterator[list[str]]:
    """Keyset pages over a sorted snapshot of `ids`, like a store's id scan."""
    ordered = sorted(ids)

    async def fetch(after: str | None, n: int) -> list[str]:
        if fetched is not None:
            fetched.append(after)
        return [i for i in ordered if after is None or i > after][:n]

    return id_pages(fetch, limit)


async def test_pages_follow_the_last_id_and_stop_on_a_short_page() -> None:
    ids = {f"id-{n:02d}" for n in range(7)}
    cursors: list[str | None] = []
    assert [page async for page in scan(ids, 3, cursors)] == [
        ["id-00", "id-01", "id-02"], ["id-03", "id-04", "id-05"], ["id-06"]]
    assert cursors == [None, "id-02", "id-05"]
    cursors.clear()
    assert [page async for page in scan(set(), 3, cursors)] == []
    assert [page async for page in scan({"a", "b", "c"}, 3)] == [["a", "b", "c"]]  # full last page: one more ask


async def test_a_page_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        [page async for page in scan({"a"}, 0)]


@pytest.mark.parametrize("seed", range(12))
async def test_differences_match_set_arithmetic(seed: int) -> None:
    rng = random.Random(seed)
    universe = [f"message-{n:04d}" for n in range(rng.randint(0, 300))]
    left = {i for i in universe if rng.random() < 0.7}
    right = {i for i in universe if rng.random() < 0.6}
    only_left: list[str] = []
    only_right: list[str] = []
    async for lo, ro in sorted_differences(scan(left, rng.randint(1, 40)), scan(right, rng.randint(1, 40))):
        assert lo or ro  # no empty chunks
        only_left += lo
        only_right += ro
    assert only_left == sorted(left - right)
    assert only_right == sorted(right - left)
