"""memproxy: an OpenAI-compatible gateway that gives chat models a stateful memory."""

__version__ = "0.1.0"
