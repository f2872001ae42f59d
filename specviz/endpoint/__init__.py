"""Runs sent to an OpenAI-compatible server, recorded as server-measured run directories
(docs/serving.md). A study's units go through these runs from :mod:`specviz.study.endpoints`."""
