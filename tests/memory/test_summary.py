from __future__ import annotations

from typing import Any

from memory.context import content_text
from memory.summary import (
    FALLBACK_CHARS,
    SUMMARY_SYSTEM_PROMPT,
    TOOL_RESULT_CHARS,
    build_summary_request,
    render_transcript,
    summary_message_text,
    truncate_fallback,
)

EVICTED: list[dict[str, Any]] = [
    {"role": "user", "content": "Hi, I'm Dana. I'm allergic to peanuts."},
    {"role": "assistant", "content": "Nice to meet you, Dana! I'll remember that."},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "memory_insert", "arguments": '{"label":"human","new_str":"Allergic to peanuts"}'}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "OK" + "x" * 2000},
    {"role": "user", "content": [{"type": "text", "text": "Book the Thai place\nfor Friday 7pm"}, {"type": "image_url", "image_url": {"url": "data:..."}}]},
    {"role": "assistant", "content": "Booked for Friday at 7pm."},
]


def _user_text(request: dict[str, Any]) -> str:
    return request["messages"][1]["content"]


def test_request_shape_has_no_tools() -> None:
    req = build_summary_request("Dana likes hiking.", EVICTED, "gpt-4o-mini", 600)
    assert req["model"] == "gpt-4o-mini"
    assert req["max_tokens"] == 600
    assert req["stream"] is False
    assert "tools" not in req and "tool_choice" not in req
    assert [m["role"] for m in req["messages"]] == ["system", "user"]
    assert req["messages"][0]["content"] == SUMMARY_SYSTEM_PROMPT
    assert all(isinstance(m["content"], str) for m in req["messages"])
    assert not any("tool_calls" in m for m in req["messages"])


def test_request_includes_previous_summary_and_evicted_text() -> None:
    text = _user_text(build_summary_request("Dana likes hiking.", EVICTED, "gpt-4o-mini", 600))
    assert "<previous_summary>\nDana likes hiking.\n</previous_summary>" in text
    assert "user: Hi, I'm Dana. I'm allergic to peanuts." in text
    assert "assistant: Nice to meet you, Dana! I'll remember that." in text
    assert 'assistant called memory_insert({"label":"human","new_str":"Allergic to peanuts"})' in text
    assert "tool (memory_insert): OK" in text
    assert "user: Book the Thai place\n  for Friday 7pm\n  [image]" in text
    assert 'count="6"' in text


def test_request_without_previous_summary() -> None:
    text = _user_text(build_summary_request(None, EVICTED[:1], "m", 200))
    assert "first summary" in text
    assert _user_text(build_summary_request("   ", EVICTED[:1], "m", 200)) == text


def test_request_asks_for_bounded_length() -> None:
    text = _user_text(build_summary_request(None, EVICTED, "m", 1000))
    assert "at most about 600 words" in text


def test_tool_results_are_truncated() -> None:
    lines = render_transcript(EVICTED)
    tool_line = next(line for line in lines if line.startswith("tool"))
    assert len(tool_line) <= len("tool (memory_insert): ") + TOOL_RESULT_CHARS
    assert tool_line.endswith("…")


def test_transcript_keeps_order_and_orphan_results() -> None:
    lines = render_transcript([
        {"role": "tool", "tool_call_id": "unknown", "content": "42"},
        {"role": "tool", "tool_call_id": "u2", "name": "calc", "content": "43"},
        {"role": "system", "content": "memory updated"},
    ])
    assert lines == ["tool: 42", "tool (calc): 43", "system: memory updated"]


def test_transcript_dict_arguments_and_text_with_calls() -> None:
    lines = render_transcript([
        {"role": "assistant", "content": "Let me check.", "tool_calls": [{"id": "c", "function": {"name": "lookup", "arguments": {"q": "x"}}}]},
    ])
    assert lines == ["assistant: Let me check.", 'assistant called lookup({"q":"x"})']


def test_huge_transcript_is_bounded_and_keeps_both_ends() -> None:
    evicted = [{"role": "user", "content": f"message number {i} " + "y" * 200} for i in range(2000)]
    text = _user_text(build_summary_request(None, evicted, "m", 500, max_transcript_chars=20_000))
    assert len(text) < 21_000
    assert "message number 0 " in text
    assert "message number 1999 " in text
    assert "transcript entries omitted" in text


def test_content_text_variants() -> None:
    assert content_text(None) == ""
    assert content_text("plain") == "plain"
    assert content_text([{"type": "text", "text": "a"}, {"type": "input_audio"}, "b"]) == "a\n[audio]\nb"
    assert content_text([{"type": "refusal", "refusal": "no"}]) == "no"


def test_summary_message_text() -> None:
    text = summary_message_text("Dana is allergic to peanuts.", 6, 20)
    assert text.startswith("Note: 20 earlier messages")
    assert "6 evicted just now" in text
    assert "conversation_search" in text
    assert text.endswith("<summary>\nDana is allergic to peanuts.\n</summary>")


def test_summary_message_text_unwraps_model_tags_and_singular() -> None:
    text = summary_message_text("  <summary>S</summary>\n", 1, 1)
    assert text.startswith("Note: 1 earlier message is")
    assert text.count("<summary>") == 1
    assert text.endswith("<summary>\nS\n</summary>")


def test_fallback_contains_previous_and_user_first_lines() -> None:
    text = truncate_fallback("Dana likes hiking.", EVICTED)
    assert text.startswith("Dana likes hiking.")
    assert "- Hi, I'm Dana. I'm allergic to peanuts." in text
    assert "- Book the Thai place" in text
    assert "for Friday" not in text  # first lines only
    assert "Booked" not in text  # assistant messages are not included


def test_fallback_is_bounded() -> None:
    many = [{"role": "user", "content": f"request {i}: " + "z" * 300} for i in range(500)]
    text = truncate_fallback("p" * 10_000, many)
    assert len(text) <= FALLBACK_CHARS
    assert "request 499" in text  # newest kept
    assert "earlier omitted" in text
    assert text.startswith("ppp")
    assert len(truncate_fallback("q" * 10_000, [])) <= FALLBACK_CHARS
    assert len(truncate_fallback(None, many, max_chars=300)) <= 300


def test_fallback_is_stable_when_applied_recursively() -> None:
    summary: str | None = None
    for round_ in range(30):
        batch = [{"role": "user", "content": f"round {round_} question {i}"} for i in range(20)]
        summary = truncate_fallback(summary, batch)
        assert len(summary) <= FALLBACK_CHARS
    assert summary is not None and "round 29 question 19" in summary


def test_fallback_without_anything() -> None:
    assert truncate_fallback(None, []) == ""
    assert truncate_fallback(None, [{"role": "assistant", "content": "x"}]) == ""
    assert truncate_fallback("prev", [{"role": "user", "content": "   \n  "}]) == "prev"
