"""`/v1/chat/completions`: the agent turn, passthrough, and the OpenAI stream."""
