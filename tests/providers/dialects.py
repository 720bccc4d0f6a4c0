"""Stream shapes of the providers memproxy fronts, written from each provider's public API documentation.

Each dialect is what one provider sends for a streamed chat completion (its chunks, its comment lines,
whether it ends with `[DONE]`), the non-streamed body it answers, and what a client of memproxy must
see in the end. Chunks are plain dicts; a string entry is sent as a raw SSE line (a comment).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _chunk(cid: str, model: str, delta: dict[str, Any] | None, finish: str | None = None, *,
           usage: dict[str, Any] | None = None, choices: bool = True, **top: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": 1764540000, "model": model}
    out["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []
    if usage is not None:
        out["usage"] = usage
    out.update(top)
    return out


# Headers a real provider sets; only the rate-limit, request-id and timing ones may reach memproxy's client.
PROVIDER_HEADERS = {"set-cookie": "__cf_bm=abc; path=/", "openai-organization": "org-secret", "cf-ray": "8f0-LIS",
                    "x-request-id": "req_123", "openai-processing-ms": "41", "x-ratelimit-remaining-requests": "99",
                    "x-ratelimit-limit-tokens": "30000"}


@dataclass
class Dialect:
    name: str
    stream: list[Any]
    done: bool = True  # the body ends with `data: [DONE]`
    # What the client of memproxy must end up with.
    content: str | None = ""
    reasoning: tuple[str, str] | None = None  # (field name, text)
    refusal: str | None = None
    finish: str = "stop"
    usage: dict[str, Any] = field(default_factory=dict)
    tool_call: tuple[str, str] | None = None  # (name, arguments) of a client tool call
    error: str | None = None  # the turn must end with an error event naming this
    extra: dict[str, Any] = field(default_factory=dict)  # other message fields (annotations, audio)
    own_test: bool = False  # checked by a test of its own, not the generic ones


OPENAI_USAGE = {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49,
                "prompt_tokens_details": {"cached_tokens": 32, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 4, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _openai() -> Dialect:
    m, c = "gpt-4o-2024-08-06", "chatcmpl-openai1"
    fp = {"system_fingerprint": "fp_50cad350e4"}
    cite = {"type": "url_citation", "url_citation": {"url": "https://example.org/tides", "title": "Tides",
                                                     "start_index": 0, "end_index": 5}}
    return Dialect("openai", [
        _chunk(c, m, {"role": "assistant", "content": "", "refusal": None}, usage=None, **fp),
        _chunk(c, m, {"content": "Tides"}, **fp),
        _chunk(c, m, {"content": " follow the moon."}, **fp),
        _chunk(c, m, {"annotations": [cite]}, **fp),
        _chunk(c, m, {}, "stop", **fp),
        _chunk(c, m, None, choices=False, usage=OPENAI_USAGE, **fp),
    ], content="Tides follow the moon.", usage=OPENAI_USAGE, extra={"annotations": [cite]})


def _openai_refusal() -> Dialect:
    m, c = "gpt-4o-2024-08-06", "chatcmpl-refuse"
    usage = {"prompt_tokens": 30, "completion_tokens": 6, "total_tokens": 36}
    return Dialect("openai-refusal", [
        _chunk(c, m, {"role": "assistant", "content": None, "refusal": ""}),
        _chunk(c, m, {"refusal": "I'm sorry, "}),
        _chunk(c, m, {"refusal": "I can't help with that."}),
        _chunk(c, m, {}, "stop"),
        _chunk(c, m, None, choices=False, usage=usage),
    ], content=None, refusal="I'm sorry, I can't help with that.", usage=usage)


def _openai_tool_call() -> Dialect:
    m, c = "gpt-4o-mini-2024-07-18", "chatcmpl-tools"
    usage = {"prompt_tokens": 55, "completion_tokens": 12, "total_tokens": 67}
    return Dialect("openai-tools", [
        _chunk(c, m, {"role": "assistant", "content": None}),
        _chunk(c, m, {"tool_calls": [{"index": 0, "id": "call_w1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": ""}}]}),
        _chunk(c, m, {"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
        _chunk(c, m, {"tool_calls": [{"index": 0, "function": {"arguments": "\"Porto\"}"}}]}),
        _chunk(c, m, {}, "tool_calls"),
        _chunk(c, m, None, choices=False, usage=usage),
    ], content=None, finish="tool_calls", usage=usage, tool_call=("get_weather", "{\"city\":\"Porto\"}"))


def _azure() -> Dialect:
    # Azure sends its prompt filter results first, in a chunk with no choices, and can stop on its filter.
    m, c = "gpt-4o", "chatcmpl-azure1"
    usage = {"prompt_tokens": 21, "completion_tokens": 3, "total_tokens": 24}
    filters = [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}}}]
    return Dialect("azure", [
        {"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": filters},
        _chunk(c, m, {"role": "assistant", "content": ""}),
        _chunk(c, m, {"content": "Here is"}),
        _chunk(c, m, {}, "content_filter"),
        _chunk(c, m, None, choices=False, usage=usage),
    ], content="Here is", finish="content_filter", usage=usage)


def _openrouter() -> Dialect:
    # OpenRouter streams `reasoning`, sends ": OPENROUTER PROCESSING" comments, and reports usage details.
    m, c = "deepseek/deepseek-r1", "gen-1764540000-abc"
    usage = {"prompt_tokens": 14, "completion_tokens": 20, "total_tokens": 34,
             "prompt_tokens_details": {"cached_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 12}}
    return Dialect("openrouter", [
        ": OPENROUTER PROCESSING",
        _chunk(c, m, {"role": "assistant", "content": "", "reasoning": "The user greets; "}, provider="DeepInfra"),
        _chunk(c, m, {"role": "assistant", "content": "", "reasoning": "reply kindly."}, provider="DeepInfra"),
        ": OPENROUTER PROCESSING",
        _chunk(c, m, {"role": "assistant", "content": "Hello there!"}, provider="DeepInfra"),
        _chunk(c, m, {"role": "assistant", "content": ""}, "stop", provider="DeepInfra"),
        _chunk(c, m, {"role": "assistant", "content": ""}, None, usage=usage, provider="DeepInfra"),
    ], content="Hello there!", reasoning=("reasoning", "The user greets; reply kindly."), usage=usage)


def _openrouter_error() -> Dialect:
    # A provider failing mid-stream: an `error` beside `choices`, and finish_reason "error".
    m, c = "anthropic/claude-3.5-sonnet", "gen-1764540000-err"
    return Dialect("openrouter-error", [
        _chunk(c, m, {"role": "assistant", "content": "Partial ans"}),
        {**_chunk(c, m, {"content": ""}, "error"),
         "error": {"code": "server_error", "message": "Provider disconnected unexpectedly"}},
    ], done=True, content="Partial ans", error="Provider disconnected unexpectedly")


def _vllm() -> Dialect:
    # vLLM with a reasoning parser: `reasoning_content` deltas, usage on the last chunk when asked.
    m, c = "Qwen/QwQ-32B", "chatcmpl-vllm1"
    usage = {"prompt_tokens": 18, "completion_tokens": 11, "total_tokens": 29}
    return Dialect("vllm", [
        _chunk(c, m, {"role": "assistant", "content": ""}),
        _chunk(c, m, {"reasoning_content": "Two plus two "}),
        _chunk(c, m, {"reasoning_content": "is four."}),
        _chunk(c, m, {"content": "4"}),
        _chunk(c, m, {"content": ""}, "stop"),
        _chunk(c, m, None, choices=False, usage=usage),
    ], content="4", reasoning=("reasoning_content", "Two plus two is four."), usage=usage)


def _deepseek() -> Dialect:
    # DeepSeek's reasoner: `reasoning_content` (content null meanwhile), cache-hit counters in usage.
    m, c = "deepseek-reasoner", "930c60df-bf64-41c9-a88e-3ec75f81e00e"
    usage = {"prompt_tokens": 13, "completion_tokens": 16, "total_tokens": 29,
             "prompt_tokens_details": {"cached_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 9},
             "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 13}
    fp = {"system_fingerprint": "fp_7e73fd9a08_prod0425fp8"}
    return Dialect("deepseek", [
        _chunk(c, m, {"role": "assistant", "content": None, "reasoning_content": ""}, **fp),
        _chunk(c, m, {"content": None, "reasoning_content": "Compare digits."}, **fp),
        _chunk(c, m, {"content": "9.11 is smaller.", "reasoning_content": None}, **fp),
        _chunk(c, m, {"content": "", "reasoning_content": None}, "stop", usage=usage, **fp),
    ], content="9.11 is smaller.", reasoning=("reasoning_content", "Compare digits."), usage=usage)


def _ollama() -> Dialect:
    m, c = "llama3.2", "chatcmpl-512"
    usage = {"prompt_tokens": 26, "completion_tokens": 4, "total_tokens": 30}
    return Dialect("ollama", [
        _chunk(c, m, {"role": "assistant", "content": "Hi"}, system_fingerprint="fp_ollama"),
        _chunk(c, m, {"role": "assistant", "content": " there"}, system_fingerprint="fp_ollama"),
        _chunk(c, m, {"role": "assistant", "content": ""}, "stop", system_fingerprint="fp_ollama"),
        _chunk(c, m, None, choices=False, usage=usage, system_fingerprint="fp_ollama"),
    ], content="Hi there", usage=usage)


def _groq() -> Dialect:
    # Groq reports usage in `x_groq.usage` on the last chunk, not in `usage`.
    m, c = "llama-3.3-70b-versatile", "chatcmpl-groq1"
    usage = {"prompt_tokens": 44, "completion_tokens": 5, "total_tokens": 49,
             "queue_time": 0.02, "prompt_time": 0.003, "completion_time": 0.01, "total_time": 0.013}
    counted = {"prompt_tokens": 44, "completion_tokens": 5, "total_tokens": 49}
    return Dialect("groq", [
        _chunk(c, m, {"role": "assistant", "content": ""}, x_groq={"id": "req_01"}),
        _chunk(c, m, {"content": "Fast reply."}),
        _chunk(c, m, {}, "stop", x_groq={"id": "req_01", "usage": usage}),
    ], content="Fast reply.", usage=counted)


def _llamacpp() -> Dialect:
    # llama.cpp's server ends the body after its finish chunk (with timings), without `[DONE]`.
    m, c = "gpt-3.5-turbo", "chatcmpl-llamacpp"
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    return Dialect("llamacpp", [
        _chunk(c, m, {"content": "Local"}),
        _chunk(c, m, {"content": " answer"}),
        _chunk(c, m, {}, "length", usage=usage,
               timings={"prompt_n": 9, "predicted_n": 3, "predicted_per_second": 41.2}),
    ], done=False, content="Local answer", finish="length", usage=usage)


def _openai_audio() -> Dialect:
    # An audio reply: the transcript and base64 data arrive in pieces of `delta.audio`, content stays null.
    m, c = "gpt-4o-audio-preview", "chatcmpl-audio"
    usage = {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60,
             "completion_tokens_details": {"audio_tokens": 33, "text_tokens": 7}}
    return Dialect("openai-audio", [
        _chunk(c, m, {"role": "assistant", "content": None}),
        _chunk(c, m, {"audio": {"id": "audio_6b1", "transcript": "Hello"}}),
        _chunk(c, m, {"audio": {"transcript": " there.", "data": "UklGRg=="}}),
        _chunk(c, m, {"audio": {"data": "AAAA", "expires_at": 1764543600}}),
        _chunk(c, m, {}, "stop"),
        _chunk(c, m, None, choices=False, usage=usage),
    ], content=None, usage=usage, own_test=True)


LOGPROB = [{"token": "Yes", "logprob": -0.01, "bytes": [89, 101, 115], "top_logprobs": []}]


def _openai_logprobs() -> Dialect:
    m, c = "gpt-4o-mini", "chatcmpl-logprobs"
    usage = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    return Dialect("openai-logprobs", [
        {**_chunk(c, m, {"role": "assistant", "content": ""}), "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": {"content": []},
             "finish_reason": None}]},
        {**_chunk(c, m, {}), "choices": [
            {"index": 0, "delta": {"content": "Yes"}, "logprobs": {"content": LOGPROB, "refusal": None},
             "finish_reason": None}]},
        _chunk(c, m, {}, "stop"),
        _chunk(c, m, None, choices=False, usage=usage),
    ], content="Yes", usage=usage, own_test=True)


DIALECTS: dict[str, Dialect] = {d.name: d for d in (
    _openai(), _openai_refusal(), _openai_tool_call(), _azure(), _openrouter(), _openrouter_error(), _vllm(),
    _deepseek(), _ollama(), _groq(), _llamacpp(), _openai_audio(), _openai_logprobs())}


def completion_body(dialect: Dialect) -> dict[str, Any]:
    """The non-streamed answer of the same dialect (for passthrough with `stream: false`)."""
    message: dict[str, Any] = {"role": "assistant", "content": dialect.content}
    if dialect.reasoning:
        message[dialect.reasoning[0]] = dialect.reasoning[1]
    if dialect.refusal:
        message["refusal"] = dialect.refusal
    if dialect.tool_call:
        message["tool_calls"] = [{"id": "call_w1", "type": "function",
                                  "function": {"name": dialect.tool_call[0], "arguments": dialect.tool_call[1]}}]
    message.update(dialect.extra)
    return {"id": "chatcmpl-" + dialect.name, "object": "chat.completion", "created": 1764540000,
            "model": dialect.name, "choices": [{"index": 0, "message": message, "finish_reason": dialect.finish}],
            "usage": dialect.usage}
