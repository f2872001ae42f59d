"""Frozen configuration of batched decoding, kept beside (not inside) :class:`RunConfig`.

A batched run is a :class:`~specviz.config.RunConfig` (models, drafter, policy, sampling, token
budget) plus a :class:`BatchConfig`: how many rows decode together, how the stream's requests are
grouped into batches, whether waiting requests join as rows finish, and whether the draft length
is one k for the whole batch or each row's own. Which drafters and policies run batched is
declared with each kind, in :mod:`specviz.supports`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from specviz.errors import SpecvizError

COMPOSITIONS = ("stream", "single-task", "mixed")
K_MODES = ("batch", "row")
BATCH_SIZE_MAX = 2**15 - 1  # batch_size and row are Int16 columns (specviz.rundir.schema)


class BatchConfigError(SpecvizError):
    """A batch setting is invalid; the message says which and how to fix it."""


class BatchDrafterError(BatchConfigError):
    """The drafter has no batched version (:func:`specviz.supports.unbatched_drafter`)."""


@dataclass(frozen=True)
class BatchConfig:
    """How requests are batched.

    - ``size``: rows decoded together (the target verifies all of them in one forward pass);
    - ``composition``: ``stream`` cuts the request stream into batches in its own order;
      ``single-task`` groups requests by category first (every batch holds one task; a task's last
      batch may be smaller); ``mixed`` deals the same requests round-robin over categories, so a
      batch holds as many tasks as it can. Single-task and mixed runs decode the same prompts;
    - ``continuous``: a finished row's slot is refilled at once from the waiting requests
      (continuous batching); without it a batch runs until its last row finishes, then the next
      batch starts (static batching: the batch shrinks as rows finish);
    - ``k_mode``: ``batch`` asks the policy for one k per round for every row (as vLLM's
      ``num_speculative_tokens``; an adaptive policy updates from the whole batch's round),
      ``row`` gives every row slot its own policy instance (per-row k).
    """

    size: int = 4
    composition: str = "stream"
    continuous: bool = False
    k_mode: str = "batch"

    def __post_init__(self) -> None:
        if self.size < 1:
            raise BatchConfigError(f"batch size must be >= 1 (got {self.size})")
        if self.size > BATCH_SIZE_MAX:
            raise BatchConfigError(f"batch size must be <= {BATCH_SIZE_MAX} (got {self.size})")
        if self.composition not in COMPOSITIONS:
            raise BatchConfigError(
                f"batch composition {self.composition!r} is not one of {', '.join(COMPOSITIONS)}"
            )
        if self.k_mode not in K_MODES:
            raise BatchConfigError(f"k mode {self.k_mode!r} is not one of {', '.join(K_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
