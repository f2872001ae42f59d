"""Timing the records a decoding generator yields (the engine itself never reads a clock), and
the one definition of a request's time to first token and latency.

Both runners, batch size 1 (:mod:`specviz.runner`) and batched (:mod:`specviz.batch.runner`),
time their decoder with :func:`spans` and stamp every request on a :class:`RequestClock`, so
``ttft_s`` and ``latency_s`` mean the same on both paths.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


def device_sync(device: torch.device) -> Callable[[], None]:
    """What waits for the device's queued work (a no-op on the CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


@dataclass(frozen=True)
class Span:
    """When the decoder began producing a record and when the record was out (device synced),
    in ``time.perf_counter`` seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        """The seconds the engine spent producing the record."""
        return self.end - self.start


def spans(records: Iterator[T], sync: Callable[[], None]) -> Iterator[tuple[T, Span]]:
    """Each record with the span the engine spent producing it. Time the caller spends between
    records (recording them) falls in no span."""
    while True:
        start = time.perf_counter()
        try:
            record = next(records)
        except StopIteration:
            return
        sync()
        yield record, Span(start, time.perf_counter())


@dataclass
class RequestClock:
    """When one request was admitted, got its first token and ended: the one definition of its
    time to first token and latency, at batch size 1 and batched.

    - ``admitted``: the start of the span of the request's first prefill (the decoder began the
      work that admits it; time waiting for a batch slot is not counted);
    - ``ttft_s = first_token - admitted``, ``first_token`` the end of that span (the prefill
      emits the first token of the first turn);
    - ``latency_s = ended - admitted``, ``ended`` when its last turn's end came out: what its
      user waits.

    A request's ``wall_s`` is deliberately not defined here, because the two paths cannot share
    one without changing a recorded figure: at batch size 1 the request has the machine alone,
    so its wall time is the wall clock over its turns (the runner's recording included, which
    the engine benchmark's recording-overhead figure measures) and equals its latency; in a
    batch every step serves several requests, so its wall time is its equal share of each step
    (the shares add up to the run's time, :mod:`specviz.batch.runner`), less than its latency.
    """

    admitted: float | None = None
    first_token: float | None = None
    ended: float | None = None

    def prefilled(self, span: Span) -> None:
        """A prefill of the request: the first one admits it and gives its first token."""
        if self.admitted is None:
            self.admitted, self.first_token = span.start, span.end

    def end(self, at: float) -> None:
        """The request's last turn ended at ``at``."""
        self.ended = at

    @property
    def ttft_s(self) -> float | None:
        """Seconds from admission to the first token; None before the first prefill."""
        if self.admitted is None or self.first_token is None:
            return None
        return self.first_token - self.admitted

    @property
    def latency_s(self) -> float:
        """Seconds from admission to the end of the last turn."""
        assert self.admitted is not None and self.ended is not None, "the request has not ended"
        return self.ended - self.admitted
