"""Batched speculative decoding: many rows drafted, verified in one target pass, advancing
independently (see ``docs/batching.md``).

The configuration is imported eagerly; the decoder, drafters and runner (which import torch)
load on first use, so a study file naming batch settings parses without torch.
"""

from importlib import import_module

from specviz.batch.config import COMPOSITIONS, K_MODES, BatchConfig, BatchConfigError

_LAZY = {
    "BatchDecoder": "specviz.batch.decoder",
    "BatchRecord": "specviz.batch.decoder",
    "Job": "specviz.batch.decoder",
    "RowDone": "specviz.batch.decoder",
    "RowRound": "specviz.batch.decoder",
    "RowTurnEnd": "specviz.batch.decoder",
    "Step": "specviz.batch.decoder",
    "StepDrafted": "specviz.batch.decoder",
    "StepPrefill": "specviz.batch.decoder",
    "build_batch_drafter": "specviz.batch.drafters",
    "BatchKV": "specviz.batch.kv",
    "BatchEventRecorder": "specviz.batch.runner",
    "BatchSession": "specviz.batch.runner",
    "compose": "specviz.batch.composition",
}

__all__ = ["COMPOSITIONS", "K_MODES", "BatchConfig", "BatchConfigError", *_LAZY]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(name)
