"""Batched speculative decoding: many rows drafted, verified in one target pass, advancing
independently (see ``docs/batching.md``)."""

from specviz.batch.compose import compose
from specviz.batch.config import COMPOSITIONS, K_MODES, BatchConfig, BatchConfigError
from specviz.batch.decoder import (
    BatchDecoder,
    BatchRecord,
    Job,
    RowDone,
    RowRound,
    RowTurnEnd,
    Step,
    StepDrafted,
    StepPrefill,
)
from specviz.batch.drafters import build_batch_drafter
from specviz.batch.kv import BatchKV
from specviz.batch.runner import BatchEventRecorder, run_batched

__all__ = [
    "COMPOSITIONS",
    "K_MODES",
    "BatchConfig",
    "BatchConfigError",
    "BatchDecoder",
    "BatchEventRecorder",
    "BatchKV",
    "BatchRecord",
    "Job",
    "RowDone",
    "RowRound",
    "RowTurnEnd",
    "Step",
    "StepDrafted",
    "StepPrefill",
    "build_batch_drafter",
    "compose",
    "run_batched",
]
