"""What a finished (or resumed) run returns: its totals. Torch-free, so the endpoint client
(:mod:`specviz.endpoint.run`) and the in-process runner (:mod:`specviz.runner`) share it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunSummary:
    """A run's totals over the requests decoded (or sent) by this call: ``requests_skipped``
    were already recorded (resume); ``wall_s`` is this call's wall time."""

    run_dir: Path
    run_id: str
    requests_done: int
    requests_skipped: int
    new_tokens: int
    wall_s: float
    drafted: int
    accepted: int

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class EndpointSummary(RunSummary):
    """A server-measured run's totals and what the server reported: ``metrics_source`` vllm |
    sglang, or None when the server gave no speculative-decoding figures."""

    metrics_source: str | None
