"""A prompt at one place in a run's stream (plain data: planning a study needs no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from specviz.workloads.prompt import Prompt


@dataclass(frozen=True)
class Request:
    """One prompt at one place in a run's stream."""

    index: int
    prompt: Prompt
    mixture: str = "custom"
    repeat: int = 0

    @property
    def id(self) -> str:
        return f"{self.repeat:02d}-{self.index:05d}-{self.prompt.id}"


def request_seed(seed: int, request: Request) -> int:
    """Per-request seed, so a resumed run samples exactly what an uninterrupted one would."""
    return (seed * 1_000_003 + request.repeat * 7_919 + request.index) % (2**63)
