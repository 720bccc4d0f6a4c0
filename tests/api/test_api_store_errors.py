"""Store errors as the API reports them: a record that vanished under a request is named, not mistaken."""

from __future__ import annotations

from typing import Any, Callable

import httpx


def test_attaching_a_block_deleted_behind_the_cache_names_the_block(
    server: Any, http: httpx.Client, create_agent: Callable[..., dict[str, Any]],
    expect_error: Callable[..., dict[str, Any]],
) -> None:
    holder = create_agent(memory_blocks=[{"label": "notes", "value": "kept in the cache"}])
    block_id = holder["blocks"][0]["id"]
    target = create_agent(memory_blocks=[])
    # Another writer removes the block; this server's cache still holds it, so only the store can tell.
    assert server.call(server.rt.store.delete_block(block_id))

    response = http.patch(f"/v1/agents/{target['id']}/core-memory/blocks/attach/{block_id}")
    error = expect_error(response, 404, "not_found")
    assert block_id in error["message"] and error["message"].startswith("block")
    assert target["id"] not in error["message"]
    # The agent the request named is still there, unchanged.
    assert http.get(f"/v1/agents/{target['id']}").json()["blocks"] == []
