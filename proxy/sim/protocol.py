"""OpenAI wire shapes the simulator sends that are not stream chunks: errors, completions, models."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.sim.script import ReplyPlan

_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "Not found."),
    408: ("timeout", "timeout", "Request timed out."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (simulated). Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request (simulated)."),
    502: ("server_error", None, "Bad gateway (simulated)."),
    503: ("server_error", "overloaded", "The engine is currently overloaded (simulated)."),
    504: ("server_error", None, "Gateway timeout (simulated)."),
}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    """The OpenAI error object."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def injected_error_body(status: int) -> bytes:
    """The error body for a `fail_status` injection."""
    type_, code, message = _ERROR_KINDS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Simulated HTTP {status}.")
    )
    return error_body(message, type_, code)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(plan: ReplyPlan, completion_id: str, created: int, model: str) -> bytes:
    """A non-streamed `chat.completion` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": plan.text if plan.pieces or not plan.tool_calls else None,
        "refusal": None,
    }
    if plan.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in plan.tool_calls
        ]
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}
            ],
            "usage": usage(plan.prompt_tokens, plan.completion_tokens),
        }
    )


def model_entry(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "memproxy-sim"}


def models_body(model_ids: list[str], created: int) -> bytes:
    """The `GET /v1/models` list."""
    return orjson.dumps({"object": "list", "data": [model_entry(m, created) for m in model_ids]})
