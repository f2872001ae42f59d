"""A short measurement of the cost curve a cost-aware policy needs, taken before a run.

``verify[n-1]``: median seconds of one cached target forward over n tokens (n = 1..k+1) after
a ``CONTEXT``-token prefill; ``draft[n-1]``: drafting n tokens: 0 for model-free drafters
(prompt-lookup, suffix: a few look-ups, negligible next to a forward), n one-token forwards of
the draft model for ``model``. Self-drafters (layer-skip, component-skip) share the target's
cache, so their cost is not measured here: give ``draft_costs`` in the config.

The curve is recorded in ``run.json`` (``cost_curve``) and reused when the run resumes. Two
fresh runs measure two slightly different curves, and a cost-aware policy may then pick
different k in a few rounds, so round counts can differ between runs; for reproducible rounds
put the recorded curve in the study file (``verify_costs``, ``draft_costs``).
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import PreTrainedModel

from specviz.config import ConfigError, RunConfig
from specviz.forward import forward, new_cache
from specviz.models import ModelCache
from specviz.policies import CostCurve

CONTEXT = 64
REPEATS = 3
MODEL_FREE = ("prompt-lookup", "suffix")


@torch.inference_mode()
def forward_seconds(model: PreTrainedModel, n: int, repeats: int = REPEATS) -> float:
    """Median seconds of one forward over ``n`` tokens after a ``CONTEXT``-token prefill."""
    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = torch.arange(CONTEXT + n, device=device) % vocab
    times = []
    for _ in range(repeats):
        cache = new_cache(model)
        forward(model, ids[:CONTEXT], cache, 0, last_only=True)
        sync(device)
        start = time.perf_counter()
        forward(model, ids[CONTEXT:], cache, CONTEXT)
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(config: RunConfig, models: ModelCache) -> CostCurve:
    """The cost curve of ``config``'s target and drafter for k = 0..``config.policy.k``."""
    k_max = config.policy.k
    kind = config.drafter.kind
    if kind not in (*MODEL_FREE, "model"):
        raise ConfigError(
            f"cost-aware cannot measure what drafter {kind!r} costs (it drafts with the "
            "target's own layers): give draft_costs and verify_costs in the policy"
        )
    target = models.get(config.target).model
    verify = tuple(forward_seconds(target, n) for n in range(1, k_max + 2))
    if kind in MODEL_FREE:
        return CostCurve(verify, (0.0,) * k_max)
    assert config.drafter.draft is not None
    step = forward_seconds(models.get(config.drafter.draft).model, 1)
    return CostCurve(verify, tuple(n * step for n in range(1, k_max + 1)))
