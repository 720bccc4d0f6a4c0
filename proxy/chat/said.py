"""What a model said besides its content and tool calls: reasoning, refusal, annotations, audio, logprobs."""

from __future__ import annotations

from typing import Any


class ModelOutput:
    """Gathers the extra fields of streamed deltas, in the provider's own field names where it has a choice."""

    __slots__ = ("reasoning", "reasoning_field", "refusal", "annotations", "audio", "logprobs")

    def __init__(self) -> None:
        self.reasoning: list[str] = []
        self.reasoning_field = "reasoning_content"  # DeepSeek and vLLM; OpenRouter says `reasoning`
        self.refusal: list[str] = []
        self.annotations: list[Any] = []
        self.audio: dict[str, Any] = {}
        self.logprobs: list[Any] | None = None

    def add(self, delta: dict[str, Any], logprobs: Any) -> None:
        for name in ("reasoning_content", "reasoning"):
            text = delta.get(name)
            if isinstance(text, str) and text:
                self.reasoning.append(text)
                self.reasoning_field = name
        refusal = delta.get("refusal")
        if isinstance(refusal, str):
            self.refusal.append(refusal)
        annotations = delta.get("annotations")
        if isinstance(annotations, list):
            self.annotations.extend(annotations)
        audio = delta.get("audio")
        if isinstance(audio, dict):
            for key, value in audio.items():
                if key in ("data", "transcript") and isinstance(value, str):
                    self.audio[key] = self.audio.get(key, "") + value
                elif value is not None:
                    self.audio[key] = value
        if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
            self.logprobs = (self.logprobs or []) + logprobs["content"]

    @property
    def transcript(self) -> str:
        return self.audio.get("transcript", "") if self.audio else ""

    def message_fields(self) -> dict[str, Any]:
        """The fields of a `chat.completion` message (beside role and content)."""
        out: dict[str, Any] = {}
        if self.reasoning:
            out[self.reasoning_field] = "".join(self.reasoning)
        if self.refusal:
            out["refusal"] = "".join(self.refusal)
        if self.annotations:
            out["annotations"] = self.annotations
        if self.audio:
            out["audio"] = self.audio
        return out

    def stored(self) -> dict[str, Any]:
        """What the assistant message keeps in its metadata; audio bytes are not kept, its id and transcript are."""
        out: dict[str, Any] = {}
        if self.reasoning:
            out["reasoning"] = "".join(self.reasoning)
        if self.refusal:
            out["refusal"] = "".join(self.refusal)
        if self.annotations:
            out["annotations"] = self.annotations
        if self.audio:
            out["audio"] = {k: v for k, v in self.audio.items() if k != "data"}
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs
        return out


def add_usage(total: dict[str, Any], usage: dict[str, Any]) -> None:
    """Sum a usage object into `total`, detail objects (cached, reasoning, audio tokens) included."""
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict) and key.endswith("_details"):
            add_usage(total.setdefault(key, {}), value)


def chunk_usage(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """The usage a chunk reports: OpenAI's `usage`, or Groq's `x_groq.usage`."""
    usage = chunk.get("usage")
    if isinstance(usage, dict) and usage:
        return usage
    groq = chunk.get("x_groq")
    if isinstance(groq, dict) and isinstance(groq.get("usage"), dict):
        return groq["usage"]
    return None
