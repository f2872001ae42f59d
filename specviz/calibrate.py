"""Before a run: a short measurement of the :class:`~specviz.cost.CostModel` a cost-aware policy
needs (the policy must choose k while the run is going, before any round exists to fit from).

The one cost model, two ways to obtain it:

- here, *before* one run, by timing synthetic forwards: ``verify_s[n-1]``: median seconds of one
  cached target forward over n tokens (n = 1..k+1) after a ``CONTEXT``-token prefill, the
  lengths timed round-robin ``REPEATS`` times;
  ``draft_s[drafter][n]``: drafting n tokens: 0 for model-free drafters (prompt-lookup, suffix:
  a few look-ups, negligible next to a forward), n one-token forwards of the draft model for
  ``model``; no prefill line (the policy never prices a prefill);
- *after* a study, post hoc, from every recorded round (:func:`specviz.metrics.accounting.
  fit_cost_model`, written to ``cost_model.json`` by :mod:`specviz.study.calibrate`): what cost
  accounting prices modelled seconds with. Its drafter curves use the same labels, so a study's
  fitted model can be given back to the policy as its ``cost_model``.

Self-drafters (layer-skip, component-skip) share the target's cache, so their cost is not
measured here: give the policy a ``cost_model`` in the config.

The model is recorded in ``run.json`` (``cost_model``, its ``to_dict`` form) and reused when the
run resumes. Two fresh runs measure two slightly different models, and a cost-aware policy may
then pick different k in a few rounds, so round counts can differ between runs; for
reproducible rounds put the recorded model in the study file (the policy's ``cost_model``).
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import PreTrainedModel

from specviz.config import ConfigError, RunConfig
from specviz.cost import CostModel
from specviz.forward import forward, new_cache
from specviz.models import ModelCache
from specviz.supports import DRAFTER_SUPPORTS

CONTEXT = 64
REPEATS = 5


@torch.inference_mode()
def forward_seconds(model: PreTrainedModel, n: int, repeats: int = REPEATS) -> float:
    """Median seconds of one forward over ``n`` tokens after a ``CONTEXT``-token prefill."""
    return statistics.median(forward_samples(model, [n] * repeats))


@torch.inference_mode()
def forward_samples(model: PreTrainedModel, lengths: list[int]) -> list[float]:
    """Seconds of one forward over each of ``lengths`` tokens, each after a fresh
    ``CONTEXT``-token prefill, in the order given."""
    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().weight.shape[0]
    times = []
    for n in lengths:
        ids = torch.arange(CONTEXT + n, device=device) % vocab
        cache = new_cache(model)
        forward(model, ids[:CONTEXT], cache, 0, last_only=True)
        sync(device)
        start = time.perf_counter()
        forward(model, ids[CONTEXT:], cache, CONTEXT)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def verify_curve(
    model: PreTrainedModel, max_rows: int, repeats: int = REPEATS
) -> tuple[float, ...]:
    """Median seconds of a verify forward over 1..``max_rows`` rows. The lengths are measured
    round-robin (1, 2, .., max_rows, 1, 2, ..), so a change of load during the measurement
    moves every length alike instead of bending the curve."""
    rows = list(range(1, max_rows + 1))
    times = forward_samples(model, rows * repeats)
    return tuple(statistics.median(times[i :: len(rows)]) for i in range(len(rows)))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate(config: RunConfig, models: ModelCache) -> CostModel:
    """The cost model of ``config``'s target and drafter (its label) for k = 0..``policy.k``."""
    k_max = config.policy.k
    kind = config.drafter.kind
    if not DRAFTER_SUPPORTS[kind].own_cost:  # specviz.supports: declared once per kind
        raise ConfigError(
            f"cost-aware cannot measure what drafter {kind!r} costs (it drafts with the "
            "target's own layers): give the policy a cost_model with its draft_s"
        )
    target = models.get(config.target).model
    verify = verify_curve(target, k_max + 1)
    step = 0.0
    if config.drafter.draft is not None:  # a draft model; the others draft for free
        draft = models.get(config.drafter.draft, config.drafter.draft_quant)
        step = forward_seconds(draft.model, 1)
    return CostModel(
        verify_s=verify,
        draft_s={config.drafter.label: tuple(n * step for n in range(k_max + 1))},
        source=f"measured before the run: median of {REPEATS} forwards after {CONTEXT} tokens",
    )
