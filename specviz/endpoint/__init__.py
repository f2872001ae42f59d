"""Runs and studies sent to an OpenAI-compatible server, recorded as server-measured run
directories (docs/serving.md)."""
