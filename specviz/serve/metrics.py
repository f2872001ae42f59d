"""Per-request speculative-decoding figures in vLLM's response shape (vLLM PR #48915).

One definition, shared by ``specviz serve`` (which computes them from its engine's rounds) and the
endpoint client (which reads them back from any server). The convention is vLLM's:

- a *spec step* is a verify round that drafted at least one token (prefill rounds and rounds the
  drafter left empty are not spec steps);
- ``acceptance_histogram[j]`` = spec steps that accepted exactly ``j`` drafted tokens, a dense
  list of ``num_spec_tokens + 1`` counts;
- ``mean_acceptance_length`` = 1 + num_accepted_draft_tokens / num_spec_steps (tokens a spec
  step adds, the target's own token included);
- ``draft_acceptance_rate`` = num_accepted_draft_tokens / num_draft_tokens;
- ``num_spec_tokens``: the longest draft a step may propose (vLLM: the configured k).

``detailed`` adds ``per_step_accepted`` and ``per_step_drafted``, one entry per spec step in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl


def acceptance_histogram(accepted: Sequence[int], num_spec_tokens: int) -> list[int]:
    """``h[j]`` = steps in ``accepted`` (accepted drafts per spec step) equal to ``j``, for
    ``j = 0..num_spec_tokens`` (vLLM's dense acceptance histogram)."""
    width = max([num_spec_tokens, *accepted]) + 1
    counts = [0] * width
    for n in accepted:
        counts[n] += 1
    return counts


@dataclass(frozen=True)
class SpecSteps:
    """One request's spec steps: accepted and drafted tokens per step, in order."""

    accepted: tuple[int, ...]
    drafted: tuple[int, ...]
    num_spec_tokens: int

    def __add__(self, other: SpecSteps) -> SpecSteps:
        """The steps of two turns of one conversation, one after the other."""
        return SpecSteps(
            self.accepted + other.accepted,
            self.drafted + other.drafted,
            max(self.num_spec_tokens, other.num_spec_tokens),
        )

    def vllm_fields(self, detailed: bool) -> dict[str, Any]:
        """``metrics.speculative_decoding`` as vLLM writes it (``detailed``: with per-step
        lists)."""
        steps, accepted, drafted = len(self.accepted), sum(self.accepted), sum(self.drafted)
        fields: dict[str, Any] = {
            "mean_acceptance_length": 1 + accepted / steps if steps else 0.0,
            "draft_acceptance_rate": accepted / drafted if drafted else 0.0,
            "acceptance_histogram": acceptance_histogram(self.accepted, self.num_spec_tokens),
            "num_spec_steps": steps,
            "num_accepted_draft_tokens": accepted,
            "num_draft_tokens": drafted,
            "num_spec_tokens": self.num_spec_tokens,
        }
        if detailed:
            fields |= {
                "per_step_accepted": list(self.accepted),
                "per_step_drafted": list(self.drafted),
            }
        return fields


def event_spec_steps(events: pl.DataFrame, num_spec_tokens: int) -> dict[str, SpecSteps]:
    """Each request's spec steps read from an event log (``specviz.rundir.schema``): its verify rounds
    that drafted, in round order, with their accepted and drafted counts; what a server computing
    these figures from the same rounds reports."""
    rounds = (
        events.filter(~pl.col("prefill") & (pl.col("n_drafted") > 0) & (pl.col("kind") == "draft"))
        .group_by("request_id", "round")
        .agg(pl.col("accepted").sum().alias("a"), pl.col("n_drafted").first().alias("d"))
        .sort("request_id", "round")
        .group_by("request_id", maintain_order=True)
        .agg("a", "d")
    )
    return {rid: SpecSteps(tuple(a), tuple(d), num_spec_tokens) for rid, a, d in rounds.iter_rows()}
