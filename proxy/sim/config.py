"""The simulator's server-wide settings; per-request overrides live in `options.py`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SimConfig:
    """Defaults for every request the simulator answers."""

    ttft_ms: float = 0.0
    token_delay_ms: float = 0.0
    reply_tokens: int = 12
    model_list: list[str] = field(default_factory=lambda: ["sim-small", "sim-large"])
    embedding_dim: int = 64
    max_context_tokens: int | None = None
    record: bool = True
