"""The Letta-compatible management API: agents, blocks, messages, runs, health, models."""
