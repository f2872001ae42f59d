"""Torch threads per worker: one core left free, the rest split, at least one each."""

from __future__ import annotations

import pytest
import torch

from specviz.errors import SpecvizError
from specviz.threads import apply_threads, threads_for, torch_threads


@pytest.mark.parametrize(
    ("workers", "cores", "threads"),
    [(1, 1, 1), (1, 2, 1), (2, 2, 1), (1, 16, 15), (4, 16, 3), (8, 4, 1)],
)
def test_threads_leave_a_core_free_and_split_the_rest(workers, cores, threads):
    assert torch_threads(workers, cores) == threads


def test_a_worker_never_takes_every_core_of_a_multicore_machine():
    for cores in range(2, 65):
        for workers in range(1, cores + 1):
            assert workers * torch_threads(workers, cores) <= cores - 1 or workers >= cores


def test_the_environment_overrides_the_choice(monkeypatch):
    monkeypatch.setenv("SPECVIZ_THREADS", "3")
    assert threads_for(1) == 3
    monkeypatch.setenv("SPECVIZ_THREADS", "zero")
    with pytest.raises(SpecvizError, match="SPECVIZ_THREADS must be a positive integer"):
        threads_for(1)


def test_apply_threads_sets_torch(monkeypatch):
    monkeypatch.setenv("SPECVIZ_THREADS", "2")
    try:
        assert apply_threads(1) == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_without_the_environment_the_rule_applies_to_this_machine(monkeypatch):
    from specviz.threads import usable_cores

    monkeypatch.delenv("SPECVIZ_THREADS", raising=False)
    assert threads_for(2) == torch_threads(2, usable_cores())
