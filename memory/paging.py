"""Walking keyset-paged id scans: one page in memory at a time, and the difference of two such scans."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

# A page fetcher: the ids after the cursor (None = from the start), ascending, at most `limit`.
PageFetch = Callable[[str | None, int], Awaitable[list[str]]]


async def id_pages(fetch: PageFetch, limit: int) -> AsyncIterator[list[str]]:
    """Yield every non-empty page of a keyset scan, each fetched after the last id of the one before."""
    if limit < 1:
        raise ValueError("page limit must be positive")
    after: str | None = None
    while True:
        page = await fetch(after, limit)
        if not page:
            return
        yield page
        if len(page) < limit:
            return
        after = page[-1]


async def sorted_differences(
    left: AsyncIterator[list[str]], right: AsyncIterator[list[str]]
) -> AsyncIterator[tuple[list[str], list[str]]]:
    """Merge two ascending id scans; yield (ids only in left, ids only in right), a chunk per page step.

    Both scans must be sorted in the same (byte) order; ids present in both are skipped.
    """
    lpage, rpage = await _next(left), await _next(right)
    li = ri = 0
    while lpage is not None or rpage is not None:
        only_left: list[str] = []
        only_right: list[str] = []
        if rpage is None:
            assert lpage is not None
            only_left, lpage, li = lpage[li:], await _next(left), 0
        elif lpage is None:
            only_right, rpage, ri = rpage[ri:], await _next(right), 0
        else:
            while li < len(lpage) and ri < len(rpage):
                a, b = lpage[li], rpage[ri]
                if a == b:
                    li += 1
                    ri += 1
                elif a < b:
                    only_left.append(a)
                    li += 1
                else:
                    only_right.append(b)
                    ri += 1
            if li == len(lpage):
                lpage, li = await _next(left), 0
            if ri == len(rpage):
                rpage, ri = await _next(right), 0
        if only_left or only_right:
            yield only_left, only_right


async def _next(pages: AsyncIterator[list[str]]) -> list[str] | None:
    """The next non-empty page, or None once the scan is done."""
    while True:
        page = await anext(pages, None)
        if page is None or page:
            return page
