"""specviz serve: the engine behind an OpenAI-compatible chat-completions API (docs/serving.md)."""
