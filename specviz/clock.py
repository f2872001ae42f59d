"""Timing the records a decoding generator yields (the engine itself never reads a clock)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")


def device_sync(device: torch.device) -> Callable[[], None]:
    """What waits for the device's queued work (a no-op on the CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def timed(records: Iterator[T], sync: Callable[[], None]) -> Iterator[tuple[T, float]]:
    """Each record with the seconds the engine spent producing it."""
    while True:
        start = time.perf_counter()
        try:
            record = next(records)
        except StopIteration:
            return
        sync()
        yield record, time.perf_counter() - start
