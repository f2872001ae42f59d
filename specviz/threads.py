"""How many torch threads a worker uses: enough to use the machine, never so many that a busy
core stalls every forward.

A torch CPU forward splits each operator over its OpenMP threads and waits for the slowest at
every barrier. When the threads fill every core and another process takes one, the thread that
shares a core holds all others at each barrier: measured on a 2-core machine with one core busy,
a one-row forward of SmolLM2-135M took 260 ms with 2 threads (87 ms idle) and a 2-row verify
over 4,000 ms (``bench/threads.py`` shows it side by side). Decoding a small model is memory
bound, so one thread decodes about as fast as two.

The choice (:func:`torch_threads`): leave one core to the rest of the machine (the report's
kernel, another worker's tokenizer, a neighbour's job) and split the others evenly between the
workers, at least one thread each: ``max(1, (cores - 1) // workers)`` with ``cores`` the cores
this process may run on. On 2 cores that is 1 thread; on 16 cores, one worker gets 15 and four
workers 3 each. ``$SPECVIZ_THREADS`` overrides it (a positive integer, per worker).

:func:`apply_threads` sets it for this process and exports ``OMP_NUM_THREADS`` (unless already
set) so processes started later (study workers, the report's kernel) start with the same number.
"""

from __future__ import annotations

import os

from specviz.errors import SpecvizError

THREADS_ENV = "SPECVIZ_THREADS"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def torch_threads(workers: int, cores: int) -> int:
    """Threads per worker: one core left free, the rest split between ``workers``, >= 1."""
    return max(1, (cores - 1) // max(1, workers))


def threads_for(workers: int) -> int:
    """:func:`torch_threads` on this machine, or ``$SPECVIZ_THREADS`` when set."""
    given = os.environ.get(THREADS_ENV)
    if given is None or not given.strip():
        return torch_threads(workers, usable_cores())
    try:
        value = int(given)
    except ValueError:
        value = 0
    if value < 1:
        raise SpecvizError(f"{THREADS_ENV} must be a positive integer (got {given!r})")
    return value


def export_threads(workers: int = 1) -> int:
    """Export the choice as ``OMP_NUM_THREADS`` (unless set) for processes started later, without
    importing torch here; return the number."""
    n = threads_for(workers)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    return n


def apply_threads(workers: int = 1) -> int:
    """Set torch's threads for one of ``workers`` workers (and export it); return the number."""
    import torch

    n = export_threads(workers)
    torch.set_num_threads(n)
    return n
