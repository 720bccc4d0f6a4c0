"""Option parsing, magic markers and word splitting, without a server."""

from __future__ import annotations

import pytest

from proxy.sim.options import SimOptionError, merge_options, options_from_headers, parse_markers
from proxy.sim.script import echo_pieces, split_pieces


@pytest.mark.parametrize("text", ["", "one", " lead", "a  b\nc ", "tabs\tand  spaces  ", "   "])
def test_split_pieces_round_trips(text: str) -> None:
    pieces = split_pieces(text)
    assert "".join(pieces) == text
    assert all(p.strip() for p in pieces[:-1])


def test_echo_pieces_pad_and_truncate() -> None:
    assert echo_pieces("a b", 5) == ["Echo:", " a", " b", " lorem", " ipsum"]
    assert echo_pieces("a b c d", 2) == ["Echo:", " a"]
    assert echo_pieces("x", 0) == []


def test_headers_become_options() -> None:
    raw = options_from_headers([(b"x-sim-ttft-ms", b"12.5"), (b"x-sim-fail-times", b"2"), (b"accept", b"*/*")])
    assert raw == {"ttft_ms": "12.5", "fail_times": "2"}
    assert merge_options(raw) == {"ttft_ms": 12.5, "fail_times": 2}


def test_later_sources_win_and_values_are_coerced() -> None:
    merged = merge_options({"reply": "magic", "stall_ms": 1}, {"reply": "header"}, {"content_then_tool_calls": "true"})
    assert merged == {"reply": "header", "stall_ms": 1.0, "content_then_tool_calls": True}


@pytest.mark.parametrize(
    "options", [{"fail_status": 200}, {"fail_times": -1}, {"ttft_ms": "soon"}, {"tool_calls": "[oops"}, {"nope": 1}]
)
def test_bad_options_raise(options: dict) -> None:
    with pytest.raises(SimOptionError):
        merge_options(options)


def test_markers_are_parsed_and_removed() -> None:
    text = 'Hi [[sim:{"reply": "a ]] b"}]] there [[call:memory_insert {"label": "human"}]] [[call:ping]] end'
    markers = parse_markers(text)
    assert markers.text == "Hi there end"
    assert markers.sim == {"reply": "a ]] b"}
    assert markers.calls == [("memory_insert", {"label": "human"}), ("ping", {})]


def test_plain_brackets_are_left_alone() -> None:
    assert parse_markers("a [[link]] b").text == "a [[link]] b"
    with pytest.raises(SimOptionError):
        parse_markers('[[sim:{"a": 1}')
