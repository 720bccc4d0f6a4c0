"""Letta's own messages API, beside the OpenAI surface, on the same turn engine."""
