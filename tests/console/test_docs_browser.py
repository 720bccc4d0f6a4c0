"""/docs in a real browser: the page renders every operation of /openapi.json and its schemas, offline."""

from __future__ import annotations

from typing import Any

import httpx


def test_docs_page_lists_every_operation(make_server: Any, page: Any) -> None:
    srv = make_server(api_keys="docs-test-key-1234567890")  # the page needs no key: it holds no data
    document = httpx.get(srv.base_url + "/openapi.json", timeout=10).json()
    expected = sum(len(item) for item in document["paths"].values())
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(srv.base_url) else None)
    page.goto(srv.base_url + "/docs")
    page.wait_for_selector("section.op")
    assert page.locator("section.op").count() == expected
    assert page.locator("#toc a").count() == expected
    create = page.locator("section.op", has_text="Create an agent")
    assert create.locator("h3").inner_text().startswith("POST") and "/v1/agents/" in create.inner_text()
    assert page.locator("#schema-AgentState").count() == 1
    # The filter narrows the list to matching operations.
    page.fill("#filter", "archival")
    visible = page.locator("section.op:not(.hidden)")
    assert 0 < visible.count() < expected
    assert all("archival" in visible.nth(i).inner_text() for i in range(visible.count()))
    assert outside == []  # nothing fetched from anywhere but memproxy
