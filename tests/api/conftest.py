"""Helpers for the management-API tests: create agents over HTTP, check the OpenAI error shape."""

from __future__ import annotations

from typing import Any, Callable

import httpx
import pytest

ERROR_KEYS = {"message", "type", "param", "code"}


def check_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert an OpenAI-shaped error with this status; returns the inner error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


@pytest.fixture
def expect_error() -> Callable[..., dict[str, Any]]:
    return check_error


@pytest.fixture
def create_agent(http: httpx.Client) -> Callable[..., dict[str, Any]]:
    """POST /v1/agents/ with the given body fields; returns the AgentState."""

    def create(**body: Any) -> dict[str, Any]:
        response = http.post("/v1/agents/", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    return create
